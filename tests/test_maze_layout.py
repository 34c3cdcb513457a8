"""Random maze layouts: connected, doorways open, seeded, PointMaze conventions; the local-view rasteriser."""

from __future__ import annotations

import numpy as np
import pytest

from spirl_ray.envs.maze_layout import (
    MazeLayout,
    bfs_distances,
    cell_to_xy,
    far_apart_cells,
    generate_layout,
    shortest_path,
    xy_to_cell,
)
from spirl_ray.envs.maze_render import MazeRenderer, render_local_view, stack_frames


@pytest.mark.parametrize("size", [5, 10, 20, (7, 13)])
def test_layouts_are_connected_with_open_doorways(size):
    rows, cols = (size, size) if isinstance(size, int) else size
    for seed in range(60):
        lay = generate_layout(size, seed)
        w = lay.walls
        assert w.shape == (rows + 2, cols + 2) and w.dtype == bool
        assert w[0].all() and w[-1].all() and w[:, 0].all() and w[:, -1].all()
        free = lay.free_cells()
        # connected: BFS from one free cell reaches every free cell
        d = bfs_distances(w, free[0])
        assert (d[~w] >= 0).all() and (d[w] == -1).all()
        # walls with doorways: at least one interior wall, each with a free doorway
        # whose two sides are free cells of the two rooms it joins
        assert len(lay.divisions) >= 1
        for div in lay.divisions:
            line = w[div.index, div.span[0] : div.span[1] + 1] if div.orientation == "h" else \
                w[div.span[0] : div.span[1] + 1, div.index]
            assert (~line).sum() >= len(div.doors) >= 1
            for i, j in div.door_cells():
                assert not w[i, j]
                a, b = ((i - 1, j), (i + 1, j)) if div.orientation == "h" else ((i, j - 1), (i, j + 1))
                assert not w[a] and not w[b]


def test_layout_is_seeded_and_varies():
    a, b = generate_layout(10, 3), generate_layout(10, 3)
    np.testing.assert_array_equal(a.walls, b.walls)
    distinct = {generate_layout(10, s).walls.tobytes() for s in range(30)}
    assert len(distinct) >= 28
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(generate_layout(10, rng1).walls, generate_layout(10, rng2).walls)


def test_maze_map_and_coordinates_match_point_maze():
    from gymnasium_robotics.envs.maze.maze_v4 import Maze

    lay = generate_layout((6, 9), 1)
    mm = lay.maze_map()
    assert isinstance(mm, list) and all(isinstance(v, int) for row in mm for v in row)
    assert np.array_equal(np.array(mm), lay.walls.astype(int))
    ref = Maze(mm, maze_size_scaling=1.0, maze_height=0.4)
    for cell in [(1, 1), (3, 4), (6, 9)]:
        xy = lay.cell_to_xy(cell)
        np.testing.assert_allclose(xy, ref.cell_rowcol_to_xy(np.array(cell)))
        np.testing.assert_array_equal(ref.cell_xy_to_rowcol(xy + 0.3), lay.xy_to_cell(xy + 0.3))
    cells = lay.free_cells()
    np.testing.assert_array_equal(xy_to_cell(cell_to_xy(cells, lay.shape), lay.shape), cells)


def test_bad_sizes_raise_value_error():
    for bad in (4, 0, -3, (10, 3), 101):
        with pytest.raises(ValueError, match="size"):
            generate_layout(bad, 0)
    with pytest.raises(ValueError, match="size"):
        generate_layout("ten", 0)
    with pytest.raises(ValueError, match="door_width"):
        generate_layout(10, 0, door_width=3)
    with pytest.raises(ValueError, match="min_room"):
        generate_layout(10, 0, min_room=0)


def test_from_maze_map_validates():
    ok = [[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    assert MazeLayout.from_maze_map(ok).free_cells().tolist() == [[1, 1], [1, 2]]
    with pytest.raises(ValueError, match="border"):
        MazeLayout.from_maze_map([[1, 1, 1], [1, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="connected"):
        MazeLayout.from_maze_map([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]])


def test_shortest_path_and_far_apart_cells():
    lay = generate_layout(10, 2)
    s, g = far_apart_cells(lay, 0)
    assert far_apart_cells(lay, 0) == (s, g)
    path = shortest_path(lay.walls, s, g)
    d = bfs_distances(lay.walls, s)
    assert path[0] == s and path[-1] == g and len(path) == d[g] + 1 == d.max() + 1
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(path, path[1:]))
    assert all(not lay.walls[c] for c in path)
    s2, g2 = far_apart_cells(lay, 0, max_distance=5)
    assert bfs_distances(lay.walls, s2)[g2] == 5
    with pytest.raises(ValueError, match="start"):
        bfs_distances(lay.walls, (0, 0))


# --------------------------------------------------------------------------- renderer


def test_whole_grid_view_reproduces_the_layout():
    lay = generate_layout(10, 4)
    R, C = lay.shape
    frame = render_local_view(lay.walls, (0.0, 0.0), image_size=R, view_cells=R)  # 1 px per cell
    assert frame.shape == (R, C) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, lay.walls.astype(np.uint8) * 255)


def test_local_view_shape_determinism_and_walls_where_the_layout_says():
    lay = generate_layout(10, 0)
    r = MazeRenderer(lay.walls, image_size=32, view_cells=4.0)  # 8 px per cell
    cell = tuple(lay.free_cells()[7])
    xy = lay.cell_to_xy(cell)
    img = r(xy)
    assert img.shape == (32, 32) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, r(np.array(xy)))  # deterministic
    np.testing.assert_array_equal(img, render_local_view(lay.walls, xy, 32, 4.0))
    # view centred on the centre of `cell`, 4 cells wide: pixels 4..11 cover the cell
    # before, 12..19 the cell itself, 20..27 the cell after (per axis)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = cell[0] + di, cell[1] + dj
            want = 255 if (not (0 <= i < lay.shape[0] and 0 <= j < lay.shape[1]) or lay.walls[i, j]) else 0
            pr, pc = 16 + 8 * di, 16 + 8 * dj  # centre pixel of that cell
            assert img[pr - 2 : pr + 2, pc - 2 : pc + 2].tolist() == [[want] * 4] * 4, (di, dj)
    # off the grid counts as wall
    assert (r((1e3, 1e3)) == 255).all()


def test_subpixel_motion_changes_the_frame_and_stacking():
    lay = generate_layout(10, 0)
    r = MazeRenderer(lay.walls)
    xy = lay.cell_to_xy(tuple(lay.free_cells()[0]))
    a, b = r(xy), r(xy + np.array([0.03, 0.0]))  # 0.03 m = 0.19 px at 6.4 px/m
    assert (a != b).any()
    s = stack_frames(None, a)
    assert s.shape == (2, 32, 32) and (s[0] == s[1]).all()
    assert (stack_frames(a, b)[0] == a).all() and (stack_frames(a, b)[1] == b).all()
    with pytest.raises(ValueError, match="image_size"):
        MazeRenderer(lay.walls, image_size=0)
    with pytest.raises(ValueError, match="view_cells"):
        MazeRenderer(lay.walls, view_cells=0)
