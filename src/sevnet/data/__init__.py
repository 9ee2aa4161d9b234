"""Data: decoding (PyAV, JPEG folders), sampling, transforms, dataset readers, loaders."""

from .annotations import AnnotationError
from .config import CacheMode, DataConfig, Sampling, to_data_config
from .datasets import VideoDataset, build_dataset
from .formats import DataFormat
from .loader import EpochSampler, SkipCounter, SkippedSamplesError, build_loader, collate_skipping
from .transforms import normalize_clips
from .video import DecodeError, VideoInfo, probe_video, read_frame_folder, read_frames

__all__ = [
    "AnnotationError",
    "CacheMode",
    "DataConfig",
    "DataFormat",
    "DecodeError",
    "EpochSampler",
    "Sampling",
    "SkipCounter",
    "SkippedSamplesError",
    "VideoDataset",
    "VideoInfo",
    "build_dataset",
    "build_loader",
    "collate_skipping",
    "normalize_clips",
    "probe_video",
    "read_frame_folder",
    "read_frames",
    "to_data_config",
]
