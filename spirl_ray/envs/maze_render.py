"""Fast top-down local views of a maze, rasterised from the known cell grid (paper appendix C, Fig. 7).

SPiRL's image-based maze state is "a local top-down view around the agent",
32x32 px, two consecutive frames stacked. MuJoCo's offscreen renderer is
slow on CPU machines, and everything in the view is known exactly (walls are
axis-aligned 1 m boxes on the grid, the view is centred on the agent), so the
frame is computed directly with numpy:

* a pixel's value is the exact fraction of its area covered by wall cells
  (anti-aliased, so sub-pixel motion changes the frame and two stacked frames
  carry the velocity), times 255, rounded to uint8;
* cells outside the grid count as walls;
* the coverage is separable: ``frame = Ay @ W @ Ax.T`` with ``Ay[r, i]`` the
  overlap of pixel row ``r`` with cell row ``i`` (and ``Ax`` likewise for
  columns), ``W`` the wall indicator of the cells under the view. Two small
  matrix products per frame.

Orientation: row 0 of the frame is the +y (north) edge of the view, column 0
the -x (west) edge, i.e. the same orientation as the ``maze_map`` (a view of
the whole grid at one pixel per cell reproduces ``maze_map``). The agent is
not drawn: it is always at the centre.

Data collection and RL both render through :class:`MazeRenderer` (inside
:class:`spirl_ray.envs.maze.MazeEnv`), so stored and online frames are the
same function of the same float64 position.
"""

from __future__ import annotations

import numpy as np

#: side of the square frame in pixels (appendix C: 32 x 32)
IMAGE_SIZE = 32
#: side of the square view in maze cells (= metres); 6.4 px per cell at 32 px
VIEW_CELLS = 5.0
#: frames stacked in an image observation (appendix C: two consecutive frames)
FRAME_STACK = 2


def _overlap_matrix(lo: float, offsets: np.ndarray, px: float, first_cell: int, n_cells: int) -> np.ndarray:
    """(n_px, n_cells) fraction of each pixel interval covered by each unit cell interval.

    Pixel ``k`` spans ``[lo + offsets[k], lo + offsets[k] + px]``; cell
    ``first_cell + m`` spans ``[first_cell + m, first_cell + m + 1]`` (grid units).
    """
    a = (lo - first_cell) + offsets[:, None]  # pixel start relative to the first cell
    c = np.arange(n_cells, dtype=np.float64)[None, :]
    return np.clip(np.minimum(a + px, c + 1.0) - np.maximum(a, c), 0.0, None) * (1.0 / px)


class MazeRenderer:
    """Renders local views of one wall grid; :func:`render_local_view` without per-call setup.

    Args:
        walls: (R, C) bool/0-1 wall grid (PointMaze ``maze_map`` order, 1 m
            cells, grid centred on the world origin).
        image_size: frame side in pixels.
        view_cells: view side in cells (= metres).

    Raises:
        ValueError: ``walls`` not 2-d, ``image_size < 1`` or ``view_cells <= 0``.
    """

    def __init__(self, walls: np.ndarray, image_size: int = IMAGE_SIZE, view_cells: float = VIEW_CELLS):
        w = np.asarray(walls)
        if w.ndim != 2:
            raise ValueError(f"walls must be a 2-d (rows, cols) grid, got shape {w.shape}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1 pixel, got {image_size}")
        if not float(view_cells) > 0:
            raise ValueError(f"view_cells must be > 0 cells, got {view_cells}")
        self.image_size = int(image_size)
        self.view_cells = float(view_cells)
        self.shape = w.shape
        self._px = self.view_cells / self.image_size
        self._offsets = np.arange(self.image_size, dtype=np.float64) * self._px
        # off-grid cells are walls: pad by more than half a view on every side
        self._pad = int(np.ceil(self.view_cells / 2.0)) + 2
        self._padded = np.pad(w.astype(np.float64), self._pad, mode="constant", constant_values=1.0)

    def __call__(self, xy) -> np.ndarray:
        """(image_size, image_size) uint8 view centred on world point ``xy`` (m); 255 = wall."""
        R, C = self.shape
        view = self.view_cells
        # view corner in grid units: u = column coordinate (x + C/2), v = row coordinate (R/2 - y)
        u0 = float(xy[0]) + C / 2.0 - view / 2.0
        v0 = R / 2.0 - float(xy[1]) - view / 2.0
        j0, i0 = int(np.floor(u0)), int(np.floor(v0))
        nj = int(np.floor(u0 + view)) - j0 + 1
        ni = int(np.floor(v0 + view)) - i0 + 1
        p = self._pad
        if i0 + p < 0 or j0 + p < 0 or i0 + ni + p > self._padded.shape[0] or j0 + nj + p > self._padded.shape[1]:
            # the view reaches past the padding (agent far off the grid): clipped
            # indices land on the padding, which is wall
            rows = np.arange(i0 + p, i0 + p + ni)
            cols = np.arange(j0 + p, j0 + p + nj)
            sub = self._padded.take(rows, axis=0, mode="clip").take(cols, axis=1, mode="clip")
        else:
            sub = self._padded[i0 + p : i0 + p + ni, j0 + p : j0 + p + nj]
        ay = _overlap_matrix(v0, self._offsets, self._px, i0, ni)
        ax = _overlap_matrix(u0, self._offsets, self._px, j0, nj)
        cover = ay @ sub @ ax.T
        return np.rint(np.clip(cover, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_local_view(
    walls: np.ndarray,
    xy,
    image_size: int = IMAGE_SIZE,
    view_cells: float = VIEW_CELLS,
) -> np.ndarray:
    """Top-down view of ``walls`` centred on world point ``xy``, as a uint8 frame.

    Args:
        walls: (R, C) bool/0-1 wall grid (PointMaze ``maze_map`` order, 1 m cells,
            grid centred on the world origin).
        xy: agent position (x, y) in metres (world frame of PointMaze).
        image_size: frame side in pixels.
        view_cells: view side in cells (= metres).

    Returns:
        (image_size, image_size) uint8: 255 * wall coverage of each pixel
        (0 free, 255 wall; off-grid counts as wall). Row 0 = +y edge.

    Raises:
        ValueError: ``image_size < 1``, ``view_cells <= 0`` or ``walls`` not 2-d.
    """
    return MazeRenderer(walls, image_size, view_cells)(xy)


def stack_frames(previous: np.ndarray | None, current: np.ndarray) -> np.ndarray:
    """(2, H, W) uint8 observation ``[previous, current]``; at reset ``previous`` is None -> current twice."""
    prev = current if previous is None else previous
    return np.stack([prev, current], axis=0)
