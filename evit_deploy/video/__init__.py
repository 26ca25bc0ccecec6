"""Video and live streams: ``predict`` on a video file, a camera or a URL, pipelined, with the model's and the
pipeline's frame rates.

```python
from evit_deploy import Predictor

seg = Predictor.from_export("exports/efficientvit-seg-b1-cityscapes-cpu-openvino")
for result in seg.stream("street.mp4", max_frames=100):      # or 0 (a camera), "rtsp://...", a folder of images
    print(result.classes()[:3])

from evit_deploy.video import VideoSettings, run_video
summary = run_video(seg, "street.mp4", "predictions/street")   # annotated.mp4, frames.jsonl, summary.json
```

Modules: ``sources`` (what a source is, PyAV decoding, damage), ``live`` (newest-frame buffer of live sources),
``pipeline`` (stages on threads with bounded queues), ``writer`` (H.264 MP4), ``prompts`` (SAM prompts by frame),
``stats`` (fps, latency percentiles, time per stage), ``run`` (the output folder), ``bench`` (model-only vs
end-to-end frame rates).
"""

from .frames import Frame, FrameSource, SourceInfo, SourceSettings, VideoError
from .pipeline import FrameJob, StreamSettings
from .prompts import PromptSchedule
from .run import VideoSettings, run_video
from .sources import is_video_source, open_source
from .stats import RunStats

__all__ = [
    "Frame", "FrameJob", "FrameSource", "PromptSchedule", "RunStats", "SourceInfo", "SourceSettings",
    "StreamSettings", "VideoError", "VideoSettings", "is_video_source", "open_source", "run_video",
]
