"""Bodies of the cluster route."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class NodeRead(BaseModel):
    node_id: str
    address: str
    alive: bool
    head: bool = Field(description="the Ray head node (runs the cluster's control store)")
    camera_slots: int | None = Field(
        description="cameras the node may carry at full frame rate (null: not limited)"
    )
    cameras: list[int] = Field(description="cameras whose worker runs on the node now")


class ClusterRead(BaseModel):
    backend: str = Field(description="local | ray")
    running: bool = Field(description="the pipeline runs in this server")
    reachable: bool = Field(description="the cluster answered within the last few seconds")
    nodes: list[NodeRead]
    capacity: int | None = Field(description="camera slots of the live nodes (null: local)")
    cameras: int = Field(description="cameras placed on a node")
    unplaced: list[int] = Field(
        description="cameras that should run but no node runs (no free slot, or restarting)"
    )
    updated_at: dt.datetime | None
    detail: str | None
