"""Retinal artery and vein trees, grown from the optic disc.

Growth is a guided random walk of all vessel tips at once (vectorised numpy), a cheap
relative of space colonisation that keeps the anatomy we need:

* per kind, a temporal arcade, a nasal, a thinner vertical and a small macular trunk leave
  the disc above and below; the arcade trunks first head for a waypoint ~2 disc diameters
  above/below the fovea;
* tips steer along a flow field whose stream lines start at the disc, bend into arcades
  around the macula temporally (never crossing the horizontal raphe) and fan out as rays
  nasally and in the periphery; thin tips also steer away from places already crowded with
  vessels, so branches fill space instead of running along their parent;
* branching follows Murray's law (r0^3 = r1^3 + r2^3) and Murray's optimal branch angles,
  calibres taper with length, arteries start thinner than veins;
* tips stop at the foveal avascular zone, at the raphe temporal to the fovea, at the edge
  of the retina, or when thinner than an arteriole.

Coordinates are degrees in a canonical right-eye frame: fovea at (0, 0), disc on +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ARTERY, VEIN = 0, 1
MIN_RADIUS_DEG = 0.015
RETINA_RADIUS_DEG = 105.0
MAX_STEPS = 400
GRID_CELL_DEG = 2.0  # sampling of the guidance field and of the crowding map
CROWDING_UPDATE_STEPS = 6
# Columns of the tip state matrix (one row per growing tip); a NaN waypoint means "follow the flow".
X, Y, DX, DY, RADIUS, WEIGHT, SIDE, KIND, BRANCH, BEND, TO_BRANCH, WAY_X, WAY_Y = range(13)


@dataclass
class VesselTree:
    """Vessel centre lines as points; consecutive points of the same branch form a segment."""

    points: np.ndarray  # (N, 2) float32, degrees
    radius: np.ndarray  # (N,) float32, degrees
    branch: np.ndarray  # (N,) int32, contiguous runs
    kind: np.ndarray  # (N,) uint8, ARTERY or VEIN
    occluded: np.ndarray  # (N,) bool, downstream of a vein occlusion

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices (i, i + 1) of the points joined by a segment."""
        start = np.flatnonzero(self.branch[:-1] == self.branch[1:])
        return start, start + 1

    def subset(self, keep: np.ndarray) -> VesselTree:
        """Drop points; a branch with a gap is split so no segment bridges the gap."""
        index = np.flatnonzero(keep)
        gap = np.ones(len(index), bool)
        gap[1:] = (np.diff(index) != 1) | (self.branch[index[1:]] != self.branch[index[:-1]])
        return VesselTree(
            self.points[index],
            self.radius[index],
            np.cumsum(gap).astype(np.int32),
            self.kind[index],
            self.occluded[index],
        )

    def arc_length(self) -> np.ndarray:
        """Distance along its branch of every point, in degrees."""
        step = np.zeros(len(self.points), np.float32)
        step[1:] = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        step[1:][self.branch[1:] != self.branch[:-1]] = 0.0
        total = np.cumsum(step)
        first = np.r_[0, np.flatnonzero(self.branch[1:] != self.branch[:-1]) + 1]
        offsets = np.repeat(total[first], np.diff(np.r_[first, len(total)]))
        return total - offsets


def guidance(points: np.ndarray, disc_x: float, arcade_power: float) -> np.ndarray:
    """Unit direction along the curves x - disc_x = -k |y|^p, which all start at the disc.

    p = arcade_power temporally bends the vessels into arcades around the macula that
    never cross the horizontal raphe; p = 1 nasally (straight rays from the disc). Far from
    the posterior pole the flow turns into rays from a point between fovea and disc, so the
    peripheral vessels fan out instead of bunching along the raphe.
    """
    x, y = points[:, 0], points[:, 1]
    dx = x - disc_x
    power = 1.0 + (arcade_power - 1.0) / (1.0 + np.exp((dx + 2.0) / 3.0))
    near = _unit(np.stack([power * dx, y], axis=1))
    far = _unit(np.stack([x - 0.4 * disc_x, y], axis=1))
    posterior = np.exp(-((((x - 0.4 * disc_x) ** 2 + y**2) / 35.0**2) ** 2))[:, None]
    return _unit(posterior * near + (1.0 - posterior) * far)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)


class Grid:
    """Square grid over the retina, for looking up per-area quantities at tip positions."""

    def __init__(self, cell_deg: float) -> None:
        self.cell_deg = cell_deg
        self.cells = int(2 * RETINA_RADIUS_DEG / cell_deg) + 2

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of the cells holding points (x, y)."""
        top = self.cells - 1
        column = np.minimum(np.maximum(((x + RETINA_RADIUS_DEG) / self.cell_deg).astype(np.intp), 0), top)
        row = np.minimum(np.maximum(((y + RETINA_RADIUS_DEG) / self.cell_deg).astype(np.intp), 0), top)
        return row, column

    def centres(self) -> np.ndarray:
        axis = (np.arange(self.cells) + 0.5) * self.cell_deg - RETINA_RADIUS_DEG
        x, y = np.meshgrid(axis, axis)
        return np.stack([x.ravel(), y.ravel()], axis=1)


def _trunks(rng: np.random.Generator) -> np.ndarray:
    """Tip state rows of the vessels leaving the disc, for both kinds and both halves."""
    rows = []
    for kind, trunk_radius in ((ARTERY, 0.18), (VEIN, 0.24)):
        offset = np.clip(rng.normal(0.0, 4.0), -8.0, 8.0)
        for side in (-1, 1):
            temporal = 180.0 - side * rng.uniform(60.0, 80.0) + offset
            nasal = side * rng.uniform(25.0, 60.0) + offset
            vertical = side * rng.uniform(80.0, 110.0) + offset
            macular = 180.0 - side * rng.uniform(5.0, 30.0)
            waypoint = (rng.uniform(-2.0, 4.0), side * rng.uniform(9.0, 14.0))
            rows.append((temporal, trunk_radius * rng.uniform(0.95, 1.1), 1.0, side, kind, *waypoint))
            rows.append((nasal, trunk_radius * rng.uniform(0.7, 0.85), 0.7, side, kind, np.nan, np.nan))
            rows.append((vertical, trunk_radius * rng.uniform(0.4, 0.5), 0.4, side, kind, np.nan, np.nan))
            rows.append((macular, trunk_radius * rng.uniform(0.3, 0.45), 0.15, side, kind, np.nan, np.nan))
    angle, radius, weight, side, kind, way_x, way_y = (np.array(column, dtype=float) for column in zip(*rows))
    state = np.zeros((len(rows), 13))
    state[:, DX], state[:, DY] = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    state[:, RADIUS], state[:, WEIGHT], state[:, SIDE], state[:, KIND] = radius, weight, side, kind
    state[:, BRANCH] = np.arange(len(rows))
    state[:, WAY_X], state[:, WAY_Y] = way_x, way_y
    return state


def _branch_spacing(rng: np.random.Generator, radius: np.ndarray) -> np.ndarray:
    """Length of vessel (degrees) before the next side branch; thick vessels branch less often."""
    return rng.uniform(1.5, 5.0, len(radius)) * (0.3 + radius / 0.1)


def grow_trees(rng: np.random.Generator, disc_x: float, faz_radius: float) -> VesselTree:
    """Grow the artery and the vein tree from the disc (canonical right-eye frame), all tips at once."""
    state = _trunks(rng)
    emerge = np.array([disc_x, 0.0]) + rng.normal(0.0, 0.3, (len(state), 2))
    state[:, X : Y + 1] = emerge + 0.3 * state[:, DX : DY + 1]
    state[:, TO_BRANCH] = _branch_spacing(rng, state[:, RADIUS])
    taper = rng.uniform(0.0005, 0.0008)
    grid = Grid(GRID_CELL_DEG)
    centres = grid.centres()
    flow = guidance(centres, disc_x, rng.uniform(2.5, 3.2)).reshape(grid.cells, grid.cells, 2)
    place = _place_rules(centres, disc_x).reshape(grid.cells, grid.cells, 4)
    crowding = np.zeros((grid.cells, grid.cells), np.float32)
    away = np.zeros((grid.cells, grid.cells, 2), np.float32)
    kind_of_branch = list(state[:, KIND])
    out = [np.column_stack([emerge, state[:, RADIUS], state[:, BRANCH]]), state[:, [X, Y, RADIUS, BRANCH]].copy()]

    for step_index in range(MAX_STEPS):
        if not len(state):
            break
        radius = state[:, RADIUS]
        cell = grid.index(state[:, X], state[:, Y])
        min_step, leaving_disc, outside, raphe = place[cell].T
        step = np.minimum(np.maximum(10.0 * radius, min_step), 2.0)
        state[:, BEND] = 0.8 * state[:, BEND] + rng.standard_normal(len(state)) * (0.018 + 0.0009 / radius)
        turn = state[:, BEND] * step
        cos_t, sin_t = np.cos(turn), np.sin(turn)
        dx = cos_t * state[:, DX] - sin_t * state[:, DY]
        dy = sin_t * state[:, DX] + cos_t * state[:, DY]

        pull = state[:, WEIGHT] * np.minimum(np.maximum(radius / 0.1, 0.1), 1.0) * step * leaving_disc
        if step_index % CROWDING_UPDATE_STEPS == 0:
            away = _away_from_crowding(crowding)
        shyness = (0.1 + 0.9 * np.minimum(np.maximum(1.0 - radius / 0.15, 0.0), 1.0)) * step
        towards = _waypoint_direction(state, flow[cell])
        push = away[cell]
        dx += pull * towards[:, 0] + shyness * push[:, 0]
        dy += pull * towards[:, 1] + shyness * push[:, 1]
        norm = np.hypot(dx, dy)
        state[:, DX], state[:, DY] = dx / norm, dy / norm
        state[:, X] += step * state[:, DX]
        state[:, Y] += step * state[:, DY]
        state[:, RADIUS] -= step * taper * np.sqrt(0.2 / radius)
        state[:, TO_BRANCH] -= step
        np.add.at(crowding, cell, step)
        out.append(state[:, [X, Y, RADIUS, BRANCH]].copy())
        alive = (
            (state[:, RADIUS] >= MIN_RADIUS_DEG)
            & (outside == 0.0)
            & (raphe * state[:, SIDE] >= 0.0)
            & (state[:, X] ** 2 + state[:, Y] ** 2 > faz_radius**2)
        )

        split = np.flatnonzero((state[:, TO_BRANCH] <= 0.0) & alive)
        if len(split):
            state[split, TO_BRANCH] = _branch_spacing(rng, state[split, RADIUS])
            fraction = 0.25 + 0.6 * rng.random(len(split)) ** 2  # child radius / parent radius
            thick_enough = fraction * state[split, RADIUS] >= 1.2 * MIN_RADIUS_DEG
            split, fraction = split[thick_enough], fraction[thick_enough]
        if len(split):
            children = _branch(rng, state, split, fraction, len(kind_of_branch))
            kind_of_branch.extend(children[:, KIND])
            out.append(children[:, [X, Y, RADIUS, BRANCH]].copy())
            state = np.vstack([state[alive], children])
        else:
            state = state[alive]

    points = np.vstack(out)
    order = np.argsort(points[:, 3], kind="stable")
    points = points[order]
    branch = points[:, 3].astype(np.int32)
    tree = VesselTree(
        points[:, :2].astype(np.float32),
        points[:, 2].astype(np.float32),
        branch,
        np.asarray(kind_of_branch, np.uint8)[branch],
        np.zeros(len(points), bool),
    )
    return tree.subset(np.hypot(points[:, 0], points[:, 1]) >= faz_radius)  # last steps of tips that hit the FAZ


def _branch(rng: np.random.Generator, state: np.ndarray, split: np.ndarray, fraction: np.ndarray, first_id: int):
    """Split the tips ``split``: a child of radius ``fraction * r0`` leaves, the parent goes on with the rest.

    Radii follow Murray's law (r0^3 = r1^3 + r2^3) and so do the angles of both daughters to the
    parent's direction. Changes the parents in ``state`` in place and returns the children's rows.
    """
    rest = np.cbrt(1.0 - fraction**3)  # r1 / r0
    f2, r2 = fraction**2, rest**2
    child_turn = np.arccos(np.minimum((1.0 + f2 * f2 - r2 * r2) / (2.0 * f2), 1.0))
    parent_turn = np.arccos(np.minimum((1.0 + r2 * r2 - f2 * f2) / (2.0 * r2), 1.0))
    sign = np.where(rng.random(len(split)) < 0.5, -1.0, 1.0)
    r0 = state[split, RADIUS]
    children = state[split].copy()
    children[:, DX : DY + 1] = _rotate(state[split, DX : DY + 1], sign * child_turn)
    children[:, RADIUS] = r2 = fraction * r0
    children[:, WEIGHT] *= 0.15
    children[:, BEND] = 0.0
    children[:, TO_BRANCH] = _branch_spacing(rng, r2)
    children[:, WAY_X : WAY_Y + 1] = np.nan
    children[:, BRANCH] = np.arange(first_id, first_id + len(split))
    state[split, DX : DY + 1] = _rotate(state[split, DX : DY + 1], -sign * parent_turn)
    state[split, RADIUS] = rest * r0
    return children


def _place_rules(points: np.ndarray, disc_x: float) -> np.ndarray:
    """Per place: minimum step, fade-in of the flow near the disc, outside the retina, raphe side (-1/0/+1).

    Steps are small where a 45 deg photo resolves them and longer in the periphery only UWF
    sees; temporal to the fovea the raphe side is the sign of y (a tip may not cross it).
    """
    x, y = points[:, 0], points[:, 1]
    return np.stack(
        [
            0.9 + 0.012 * np.hypot(x, y),
            1.0 - np.exp(-((x - disc_x) ** 2 + y**2) / 9.0),
            (np.hypot(x - 0.3 * disc_x, y) >= RETINA_RADIUS_DEG).astype(float),
            np.where(x < -1.0, np.sign(y) * (np.abs(y) > 0.3), 0.0),
        ],
        axis=1,
    )


def _waypoint_direction(state: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Unit direction to each tip's waypoint, or the flow once it has none or has passed it (temporally)."""
    passed = ~(state[:, X] > state[:, WAY_X])  # NaN waypoints compare False, so count as passed
    state[passed, WAY_X : WAY_Y + 1] = np.nan
    heading = state[:, WAY_X : WAY_Y + 1] - state[:, X : Y + 1]
    heading /= np.hypot(heading[:, :1], heading[:, 1:]) + 1e-9
    return np.where(passed[:, None], flow, heading)


def _away_from_crowding(crowding: np.ndarray) -> np.ndarray:
    """Per cell, the direction down the smoothed crowding map, scaled from 0 (flat) to ~1 (steep)."""
    smooth = cv2.GaussianBlur(crowding, (0, 0), 1.5)
    slope = np.empty((*smooth.shape, 2), np.float32)
    slope[..., 0] = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    slope[..., 1] = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    slope *= -1.0 / (8.0 * GRID_CELL_DEG)
    return slope / (np.sqrt(slope[..., :1] ** 2 + slope[..., 1:] ** 2) + 0.02)


def _rotate(vectors: np.ndarray, angles: np.ndarray) -> np.ndarray:
    cos_a, sin_a = np.cos(angles), np.sin(angles)
    rotated = np.empty_like(vectors)
    rotated[:, 0] = cos_a * vectors[:, 0] - sin_a * vectors[:, 1]
    rotated[:, 1] = sin_a * vectors[:, 0] + cos_a * vectors[:, 1]
    return rotated
