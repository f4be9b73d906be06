"""Camera workers on a Ray cluster (`VMS_PIPELINE__BACKEND=ray`).

- `leases`: one lease per camera in the database, whose epoch is the fencing token every index
  and gap write of a camera actor carries;
- `actor`: `CameraActor`, a detached named Ray actor per camera that runs the ordinary
  `CameraWorker` once it holds the camera's lease, configured from the database;
- `gateway`: a child process of the API that is the Ray driver: it reconciles the actors with
  the registry, collects their status and relays live frames and previews;
- `supervisor`: `RaySupervisor`, the API's side (the same interface as the local
  `PipelineSupervisor`), which owns the gateway process and the live channels.

Ray is imported only by `actor`, `gateway` and `placement`, and only when the backend runs.
"""
