"""Constants named as ``azure.ai.ml.constants`` names them (``from batchpoint.constants import
AssetTypes, BatchDeploymentOutputAction``), for code written against azure-ai-ml."""

from __future__ import annotations

from batchpoint.entities import AssetTypes, BatchDeploymentOutputAction


class InputOutputModes:
    """How a job reads an input or writes an output, as azure-ai-ml names the modes. Batchpoint's
    workers always get local files (downloaded, or read in place on a local data store), so a mode
    is accepted and kept, and has no effect (docs/azure-compatibility.md)."""

    MOUNT = "mount"
    DOWNLOAD = "download"
    UPLOAD = "upload"
    RO_MOUNT = "ro_mount"
    RW_MOUNT = "rw_mount"
    EVAL_MOUNT = "eval_mount"
    EVAL_DOWNLOAD = "eval_download"
    DIRECT = "direct"


class BatchDeploymentType:
    """The kinds of batch deployment azure-ai-ml names; Batchpoint has model deployments only."""

    MODEL = "model"
    PIPELINE = "pipeline"


__all__ = ["AssetTypes", "BatchDeploymentOutputAction", "BatchDeploymentType", "InputOutputModes"]
