"""Random maze layouts on a cell grid: walls with doorways at random positions (paper appendix C).

SPiRL's maze data use "random layouts ... by placing walls with doorways in
randomly sampled positions" and a new layout per training sequence; the
downstream maze is sampled the same way, four times larger in area, and then
kept fixed (appendix C).

Generator: recursive division. The free interior (``rows`` x ``cols`` cells,
inside a one-cell outer wall border) is split by a straight wall one cell
thick; the wall gets one doorway (``door_width`` cells) at a random position;
both halves are split again until no wall fits while leaving rooms at least
``min_room`` cells wide. A wall is never placed where one of its ends would
abut a doorway of an enclosing wall, so every doorway stays open and the
free cells are connected by construction (checked again by BFS).

Grid conventions are gymnasium-robotics' PointMaze ones (``maze_map[i][j]``:
``1`` wall, ``0`` free; row ``i`` grows towards -y, column ``j`` towards +x;
cells are 1 m squares, ``maze_size_scaling = 1``; the map is centred on the
world origin). :func:`cell_to_xy` / :func:`xy_to_cell` convert between cell
indices and metres exactly as ``Maze.cell_rowcol_to_xy`` / ``cell_xy_to_rowcol``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

#: interior size (cells) of the training-data layouts
TRAIN_MAZE_SIZE = 10
#: interior size (cells) of the downstream maze: 4x the training area (appendix C)
DOWNSTREAM_MAZE_SIZE = 20
#: edge length of one maze cell in metres (PointMaze's ``maze_size_scaling``)
CELL_SIZE_M = 1.0
#: largest accepted interior size (cells); bigger mazes make PointMaze slow to build
MAX_MAZE_SIZE = 100

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


@dataclass(frozen=True)
class MazeDivision:
    """One interior wall of a layout (for tests and inspection).

    ``orientation`` is ``"h"`` (a row of wall cells, index = that row) or
    ``"v"`` (a column, index = that column); the wall spans cells
    ``span[0]..span[1]`` (inclusive) along the other axis; ``doors`` are the
    along-wall indices left free as the doorway.
    """

    orientation: str
    index: int
    span: tuple[int, int]
    doors: tuple[int, ...]

    def door_cells(self) -> list[tuple[int, int]]:
        """Doorway cells as ``(row, col)`` grid indices."""
        if self.orientation == "h":
            return [(self.index, d) for d in self.doors]
        return [(d, self.index) for d in self.doors]


@dataclass(frozen=True)
class MazeLayout:
    """A maze on a cell grid, outer wall border included.

    Attributes:
        walls: (rows + 2, cols + 2) bool array, True = wall cell. Row/column 0
            and -1 are the outer border.
        seed: the generator seed (None for a layout given by hand).
        divisions: the interior walls and their doorways, in placement order.
    """

    walls: np.ndarray
    seed: int | None = None
    divisions: tuple[MazeDivision, ...] = field(default=(), compare=False)

    def __post_init__(self):
        w = np.asarray(self.walls, dtype=bool)
        if w.ndim != 2 or min(w.shape) < 3:
            raise ValueError(f"walls must be a 2-d grid of at least 3x3 cells (border included), got shape {w.shape}")
        w = w.copy()
        w.setflags(write=False)
        object.__setattr__(self, "walls", w)

    @classmethod
    def from_maze_map(cls, maze_map, seed: int | None = None) -> "MazeLayout":
        """Layout from a PointMaze ``maze_map`` (list of lists; ``1`` wall, anything else free).

        Raises:
            ValueError: ragged rows, fewer than 3x3 cells, a border cell that is
                not a wall, or free cells that are not all connected.
        """
        rows = [list(r) for r in maze_map]
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("maze_map must be a non-empty list of equal-length rows")
        walls = np.array([[c == 1 for c in r] for r in rows], dtype=bool)
        layout = cls(walls=walls, seed=seed)
        border = np.concatenate([walls[0], walls[-1], walls[:, 0], walls[:, -1]])
        if not border.all():
            raise ValueError("maze_map must have a wall (1) on every border cell")
        if not layout.free_cells().size:
            raise ValueError("maze_map has no free (0) cell")
        if not is_connected(walls):
            raise ValueError("maze_map's free cells are not all connected")
        return layout

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the full grid, border included."""
        return tuple(self.walls.shape)  # type: ignore[return-value]

    @property
    def interior_size(self) -> tuple[int, int]:
        """(rows, cols) of the interior, border excluded."""
        return (self.walls.shape[0] - 2, self.walls.shape[1] - 2)

    def maze_map(self) -> list[list[int]]:
        """PointMaze ``maze_map``: list of lists of ints, ``1`` wall, ``0`` free."""
        return self.walls.astype(int).tolist()

    def free_cells(self) -> np.ndarray:
        """(K, 2) int array of free ``(row, col)`` cells in row-major order."""
        return np.argwhere(~self.walls)

    def is_free(self, cell) -> bool:
        """True when ``cell`` = (row, col) is inside the grid and not a wall."""
        i, j = int(cell[0]), int(cell[1])
        return 0 <= i < self.walls.shape[0] and 0 <= j < self.walls.shape[1] and not self.walls[i, j]

    def cell_to_xy(self, cell) -> np.ndarray:
        """World (x, y) in metres of the centre of ``cell`` (..., 2) = (row, col)."""
        return cell_to_xy(cell, self.walls.shape)

    def xy_to_cell(self, xy) -> np.ndarray:
        """(row, col) int cell containing world (x, y) metres (..., 2); may be off the grid."""
        return xy_to_cell(xy, self.walls.shape)


def cell_to_xy(cell, grid_shape: tuple[int, int]) -> np.ndarray:
    """Centre (x, y) in metres of cells (..., 2) = (row, col) on a grid of ``grid_shape``.

    Same as gymnasium-robotics' ``Maze.cell_rowcol_to_xy`` with scaling 1:
    ``x = (col + 0.5) - cols / 2``, ``y = rows / 2 - (row + 0.5)``.
    """
    c = np.asarray(cell, dtype=np.float64)
    rows, cols = grid_shape
    return np.stack([(c[..., 1] + 0.5) * CELL_SIZE_M - cols * CELL_SIZE_M / 2,
                     rows * CELL_SIZE_M / 2 - (c[..., 0] + 0.5) * CELL_SIZE_M], axis=-1)


def xy_to_cell(xy, grid_shape: tuple[int, int]) -> np.ndarray:
    """(row, col) int cells (..., 2) containing world points ``xy`` (..., 2) in metres."""
    p = np.asarray(xy, dtype=np.float64)
    rows, cols = grid_shape
    i = np.floor((rows * CELL_SIZE_M / 2 - p[..., 1]) / CELL_SIZE_M)
    j = np.floor((p[..., 0] + cols * CELL_SIZE_M / 2) / CELL_SIZE_M)
    return np.stack([i, j], axis=-1).astype(np.int64)


# --------------------------------------------------------------------------- generator


def _as_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    try:
        r, c = size
        return int(r), int(c)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (rows, cols) pair of ints, got {size!r}") from None


def generate_layout(
    size=TRAIN_MAZE_SIZE,
    seed: int | np.random.Generator | None = None,
    *,
    min_room: int = 2,
    door_width: int = 1,
) -> MazeLayout:
    """Random connected maze by recursive division with one doorway per wall (appendix C).

    Args:
        size: interior size in cells, an int (square) or ``(rows, cols)``; the
            grid gets a one-cell wall border, so ``walls`` is
            ``(rows + 2, cols + 2)``. Cells are 1 m (PointMaze scaling 1).
        seed: int seed or a numpy ``Generator`` (used, not copied); same seed,
            same layout.
        min_room: smallest room width in cells on either side of a wall.
        door_width: doorway width in cells (1 <= door_width <= min_room).

    Returns:
        :class:`MazeLayout` whose free cells are all 4-connected.

    Raises:
        ValueError: ``size`` below ``2 * min_room + 1`` (no wall would fit) or
            above :data:`MAX_MAZE_SIZE`; ``min_room < 1``; ``door_width``
            outside ``[1, min_room]``.
    """
    rows, cols = _as_size(size)
    if int(min_room) < 1:
        raise ValueError(f"min_room must be >= 1 cell, got {min_room}")
    min_room = int(min_room)
    lo = 2 * min_room + 1
    if not (lo <= rows <= MAX_MAZE_SIZE and lo <= cols <= MAX_MAZE_SIZE):
        raise ValueError(
            f"size must be between {lo} (2 * min_room + 1: room for one wall with min_room={min_room}) "
            f"and {MAX_MAZE_SIZE} cells per side, got {(rows, cols)}"
        )
    if not 1 <= int(door_width) <= min_room:
        raise ValueError(f"door_width must be in [1, min_room={min_room}] cells, got {door_width}")
    door_width = int(door_width)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    walls = np.zeros((rows + 2, cols + 2), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    divisions: list[MazeDivision] = []

    # regions: (r0, r1, c0, c1) inclusive interior cell ranges, processed depth-first
    stack = [(1, rows, 1, cols)]
    while stack:
        r0, r1, c0, c1 = stack.pop()
        h, w = r1 - r0 + 1, c1 - c0 + 1
        # a wall row r must leave min_room rows on both sides, and its two ends
        # must abut walls (not an enclosing wall's doorway, which it would block)
        h_cand = [r for r in range(r0 + min_room, r1 - min_room + 1) if walls[r, c0 - 1] and walls[r, c1 + 1]]
        v_cand = [c for c in range(c0 + min_room, c1 - min_room + 1) if walls[r0 - 1, c] and walls[r1 + 1, c]]
        if not h_cand and not v_cand:
            continue
        if h_cand and v_cand:
            horizontal = h > w or (h == w and bool(rng.integers(2)))
        else:
            horizontal = bool(h_cand)
        if horizontal:
            r = int(h_cand[rng.integers(len(h_cand))])
            d0 = c0 + int(rng.integers(w - door_width + 1))
            walls[r, c0 : c1 + 1] = True
            walls[r, d0 : d0 + door_width] = False
            divisions.append(MazeDivision("h", r, (c0, c1), tuple(range(d0, d0 + door_width))))
            stack += [(r0, r - 1, c0, c1), (r + 1, r1, c0, c1)]
        else:
            c = int(v_cand[rng.integers(len(v_cand))])
            d0 = r0 + int(rng.integers(h - door_width + 1))
            walls[r0 : r1 + 1, c] = True
            walls[d0 : d0 + door_width, c] = False
            divisions.append(MazeDivision("v", c, (r0, r1), tuple(range(d0, d0 + door_width))))
            stack += [(r0, r1, c0, c - 1), (r0, r1, c + 1, c1)]

    if not is_connected(walls):  # pragma: no cover - excluded by construction
        raise RuntimeError(f"generated maze (size={size}, seed={seed}) is not connected; this is a bug")
    return MazeLayout(walls=walls, seed=seed if isinstance(seed, (int, np.integer)) else None,
                      divisions=tuple(divisions))


# --------------------------------------------------------------------------- graph search


def bfs_distances(walls: np.ndarray, start) -> np.ndarray:
    """Shortest 4-connected path lengths (in cells) from ``start`` to every cell.

    Args:
        walls: (R, C) bool, True = wall.
        start: (row, col) free cell.

    Returns:
        (R, C) int64 array; -1 for walls and unreachable cells.

    Raises:
        ValueError: ``start`` is off the grid or a wall.
    """
    walls = np.asarray(walls, dtype=bool)
    R, C = walls.shape
    si, sj = int(start[0]), int(start[1])
    if not (0 <= si < R and 0 <= sj < C) or walls[si, sj]:
        raise ValueError(f"start must be a free cell of the {R}x{C} grid, got {(si, sj)}")
    dist = np.full((R, C), -1, dtype=np.int64)
    dist[si, sj] = 0
    free = ~walls
    queue = deque([(si, sj)])
    while queue:
        i, j = queue.popleft()
        d = dist[i, j] + 1
        for di, dj in _NEIGHBOURS:
            a, b = i + di, j + dj
            if 0 <= a < R and 0 <= b < C and free[a, b] and dist[a, b] < 0:
                dist[a, b] = d
                queue.append((a, b))
    return dist


def is_connected(walls: np.ndarray) -> bool:
    """True when every free cell of ``walls`` (R, C) is reachable from every other one."""
    walls = np.asarray(walls, dtype=bool)
    free = np.argwhere(~walls)
    if len(free) == 0:
        return False
    return bool((bfs_distances(walls, free[0])[~walls] >= 0).all())


def shortest_path(walls: np.ndarray, start, goal) -> list[tuple[int, int]]:
    """A shortest 4-connected cell path from ``start`` to ``goal``, both included.

    Ties are broken deterministically (BFS distance field walked back from the
    goal, neighbours in up/down/left/right order).

    Raises:
        ValueError: ``start``/``goal`` off the grid or a wall, or ``goal`` unreachable.
    """
    walls = np.asarray(walls, dtype=bool)
    dist = bfs_distances(walls, start)
    gi, gj = int(goal[0]), int(goal[1])
    R, C = walls.shape
    if not (0 <= gi < R and 0 <= gj < C) or walls[gi, gj]:
        raise ValueError(f"goal must be a free cell of the {R}x{C} grid, got {(gi, gj)}")
    if dist[gi, gj] < 0:
        raise ValueError(f"goal {(gi, gj)} is not reachable from start {tuple(int(v) for v in start)}")
    path = [(gi, gj)]
    i, j = gi, gj
    while dist[i, j] > 0:
        for di, dj in _NEIGHBOURS:
            a, b = i + di, j + dj
            if 0 <= a < R and 0 <= b < C and dist[a, b] == dist[i, j] - 1:
                i, j = a, b
                break
        path.append((i, j))
    return path[::-1]


def far_apart_cells(
    layout: MazeLayout, seed: int | np.random.Generator | None = None, max_distance: int | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """A (start, goal) pair of free cells far apart along the maze (downstream task).

    Double sweep: ``start`` is the free cell farthest (BFS) from a seeded
    random free cell; ``goal`` is the free cell farthest from ``start`` whose
    BFS distance is at most ``max_distance`` cells (None = no limit). Ties are
    broken by the seeded generator, so the pair is a function of layout and seed.

    Raises:
        ValueError: ``max_distance < 1``.
    """
    if max_distance is not None and int(max_distance) < 1:
        raise ValueError(f"max_distance must be >= 1 cell or None, got {max_distance}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    free = layout.free_cells()
    probe = free[rng.integers(len(free))]
    d0 = bfs_distances(layout.walls, probe)
    far = np.argwhere(d0 == d0.max())
    start = far[rng.integers(len(far))]
    d1 = bfs_distances(layout.walls, start)
    if max_distance is not None:
        d1 = np.where(d1 <= int(max_distance), d1, -1)
    far = np.argwhere(d1 == d1.max())
    goal = far[rng.integers(len(far))]
    return (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1]))


def visited_cells(layout: MazeLayout, xy) -> np.ndarray:
    """(R, C) bool: the free cells of ``layout`` that contain at least one point of ``xy`` (N, 2) metres.

    Points off the grid or inside walls (the ball's centre never is) are ignored.
    """
    cells = xy_to_cell(np.asarray(xy, dtype=np.float64).reshape(-1, 2), layout.shape)
    R, C = layout.shape
    ok = (cells[:, 0] >= 0) & (cells[:, 0] < R) & (cells[:, 1] >= 0) & (cells[:, 1] < C)
    seen = np.zeros((R, C), dtype=bool)
    seen[cells[ok, 0], cells[ok, 1]] = True
    return seen & ~layout.walls


def cell_coverage(layout: MazeLayout, xy) -> float:
    """Fraction in [0, 1] of the free cells of ``layout`` visited by the positions ``xy`` (N, 2) metres.

    The exploration measure of the maze maps (paper Fig. 5): how much of the
    maze a sampler reaches, independent of how often.
    """
    return float(visited_cells(layout, xy).sum() / max(int((~layout.walls).sum()), 1))
