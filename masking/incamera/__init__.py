"""In-camera privacy masks: a static plan as ONVIF mask polygons, and the check that a camera's
own picture really carries them.

Passthrough recording stores the camera's H.264 untouched, so the camera must draw the masks.
This module is the pure half of that: it decides whether a plan can be drawn by a camera
(`is_static`), turns it into the few simple polygons a camera accepts (`camera_masks`), maps
coordinates between the plan and ONVIF, and checks decoded frames (`MaskCheck.verify`). No IO.

Coordinates. A plan uses normalised image coordinates (0..1, x right, y down). ONVIF masks use
ONVIF's normalised coordinate system of the video source configuration's window (Media2 spec,
"Privacy Masks"; Analytics spec, "Spatial Relation"): -1..1 with (0, 0) in the centre, x right and
y *up*, so the top left corner is (-1, 1). Pixel coordinates here have pixel centres at integers
(`masking.geometry`), so the frame's outline runs from -0.5 to width - 0.5.

Colour. ONVIF's default colour space is YCbCr as in JPEG (full range 0..255, BT.601 matrix).
A mask colour is requested in that space (`MaskColor`); `MaskColor.stream_yuv` gives the value
the camera's H.264 should carry for the stream's matrix and range.
"""

from masking.incamera.check import (
    DEFAULT_MASK_COLOR,
    YCBCR_COLORSPACE,
    CheckParams,
    CheckResult,
    MaskCheck,
    MaskColor,
    pick_mask_color,
    planes_of,
)
from masking.incamera.coords import (
    InCameraError,
    LimitsExceeded,
    NotStatic,
    OnvifPolygon,
    default_margin_px,
    from_onvif,
    onvif_to_pixels,
    pixels_to_onvif,
    rasterise_onvif,
    to_onvif,
)
from masking.incamera.cover import (
    CameraMasks,
    MaskLimits,
    camera_masks,
    is_static,
)

__all__ = [
    "DEFAULT_MASK_COLOR",
    "YCBCR_COLORSPACE",
    "CameraMasks",
    "CheckParams",
    "CheckResult",
    "InCameraError",
    "LimitsExceeded",
    "MaskCheck",
    "MaskColor",
    "MaskLimits",
    "NotStatic",
    "OnvifPolygon",
    "camera_masks",
    "default_margin_px",
    "from_onvif",
    "is_static",
    "onvif_to_pixels",
    "pick_mask_color",
    "pixels_to_onvif",
    "planes_of",
    "rasterise_onvif",
    "to_onvif",
]
