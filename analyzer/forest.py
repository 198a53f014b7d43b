"""Roots and depths of a parent graph by pointer jumping (path doubling), cycles found and cut.

Task resolution follows parent edges to the top: traces up their chosen parent link, agent runs up their
parent agent run. A recursive walk costs one step per level of depth (a 10,000-deep chain of linked traces is
10,000 steps of a recursive query, each over every edge); pointer jumping costs one vectorized pass per
*doubling* of the distance covered, so O(n log depth) in all, with no walk to bound: chains, cycles, deep
fan-outs and hostile link graphs resolve in ceil(log2 n) + 1 passes at most (Wyllie's list ranking).

Nodes are dense indices 0..n-1 (callers number their keys in sorted order, so "smallest index" is
"smallest key"); `parent[i]` is i's parent or -1. Every node ends in exactly one of:
  * a root (parent -1): root = itself, depth 0;
  * a tree under a root: root = that root, depth = edges followed;
  * a cycle, or a tree hanging off one: the cycle's smallest node becomes a root (its parent edge is cut,
    the stitching rule for cycles), every cycle member is marked `in_cycle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Forest:
    root: np.ndarray  # int64: the root each node reaches
    depth: np.ndarray  # int64: parent edges followed from the node to its root
    in_cycle: np.ndarray  # bool: the node lies on a cycle (the smallest node of each cycle is now a root)
    cut: np.ndarray  # bool: the node's parent edge was cut (the smallest node of each cycle)


def resolve_forest(parent: np.ndarray) -> Forest:
    """Root, depth and cycle membership of every node of `parent` (see the module docstring)."""
    parent = np.asarray(parent, dtype=np.int64)
    count = len(parent)
    in_cycle = np.zeros(count, dtype=bool)
    cut = np.zeros(count, dtype=bool)
    if count == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Forest(empty, empty, in_cycle, cut)
    if np.any((parent < -1) | (parent >= count)):
        raise ValueError("parent indices must be -1 or a node index")
    nodes = np.arange(count, dtype=np.int64)
    parent = np.where(parent == nodes, -1, parent)  # a node that is its own parent is a root
    unsettled = _cycle_bound_nodes(parent, nodes)
    if len(unsettled):
        members, tops = _cycles(parent, unsettled)
        in_cycle[members] = True
        cut[tops] = True
        parent = parent.copy()
        parent[tops] = -1
    root, depth = _roots_and_depths(parent, nodes)
    return Forest(root, depth, in_cycle, cut)


def _rounds(count: int) -> int:
    """Passes after which a jump covers every node: 2**rounds >= count (plus one for safety)."""
    return max(1, int(count - 1).bit_length()) + 1


def _cycle_bound_nodes(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The nodes whose walk up never reaches a root (on a cycle or hanging off one)."""
    if not np.any(parent >= 0):
        return np.zeros(0, dtype=np.int64)
    ahead = np.where(parent < 0, nodes, parent)  # roots point at themselves: walks stop there
    for _ in range(_rounds(len(parent))):
        jumped = ahead[ahead]
        if np.array_equal(jumped, ahead):  # every walk is at a fixed point: a root, or on a short cycle
            break
        ahead = jumped
    return np.flatnonzero(parent[ahead] >= 0)


def _cycles(parent: np.ndarray, unsettled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every cycle member, the smallest member of each cycle), among the `unsettled` nodes only.

    A jump of 2**k >= n steps from any unsettled node lands on a cycle, and from the members of a cycle such
    a jump is a rotation of that cycle: the landing points are exactly the members. The smallest member of
    each cycle is a running minimum carried along the same doubling jumps.
    """
    up = np.searchsorted(unsettled, parent[unsettled])  # unsettled nodes are closed under `parent`
    rounds = _rounds(len(unsettled))
    ahead = up.copy()
    for _ in range(rounds):
        ahead = ahead[ahead]
    members_local = np.unique(ahead)
    # smallest node among the 2**k nodes ahead, for k up to `rounds`: the whole cycle for its members
    smallest = np.arange(len(unsettled), dtype=np.int64)
    step = up.copy()
    for _ in range(rounds):
        smallest = np.minimum(smallest, smallest[step])
        step = step[step]
    tops_local = np.unique(smallest[members_local])
    return unsettled[members_local], unsettled[tops_local]


def _roots_and_depths(parent: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root and depth in a forest: each pass doubles the distance jumped (only nodes not yet at a root)."""
    ahead = np.where(parent < 0, nodes, parent)
    depth = (parent >= 0).astype(np.int64)
    active = np.flatnonzero(parent[ahead] >= 0)  # nodes whose jump has not reached a root yet
    for _ in range(_rounds(len(parent))):
        if not len(active):
            return ahead, depth
        over = ahead[active]
        depth[active] += depth[over]  # right-hand sides are read before writing: one synchronous step
        ahead[active] = ahead[over]
        active = active[parent[ahead[active]] >= 0]
    raise AssertionError("a cycle was left in the forest")  # unreachable: cycles are cut above


def components(count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of an undirected graph on nodes 0..count-1: each node's smallest node.

    Hook and compress (Shiloach-Vishkin style): each pass hooks the larger label of every edge onto the
    smaller one, then jumps every label to its label's label until none moves; a pass at least halves the
    labels still apart, so the passes are few even when a component is a long path.
    """
    label = np.arange(count, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if not len(left):
        return label
    while True:
        low = np.minimum(label[left], label[right])
        hooked = label.copy()
        np.minimum.at(hooked, label[left], low)  # a label points at a smaller one: labels form trees
        np.minimum.at(hooked, label[right], low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, label):
            return label
        label = hooked
