"""The streaming pipeline: one worker process per camera (ingest, mask, live, record) and the
supervisor that runs them inside the server.

    supervisor.PipelineSupervisor   thread in the API process: registry -> desired workers
    worker.run_worker               child process: reader thread -> mask -> live / recorder
    recorder.SegmentRecorder        masked frames -> fsynced, hashed, indexed MP4 segments
    live.LiveChannel                latest masked JPEG in shared memory, never on disk
"""
