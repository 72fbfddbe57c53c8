"""Where a registered model's files live in the workspace, laid out as Azure ML lays them out.

On Azure, ``AZUREML_MODEL_DIR`` is the folder of one model version, and the registered folder (or
single file) sits *inside* it under its original name::

    <home>/models/<name>/<version>/          ← AZUREML_MODEL_DIR
        model/                               ← registered from a folder named "model"
            MLmodel, model.pkl, ...
    <home>/models/<name>/<version>/
        model.pkl                            ← registered from a single file

so both idioms of Azure's scoring scripts find it: ``glob.glob(AZUREML_MODEL_DIR + "/*/")[0]``
and ``os.path.join(AZUREML_MODEL_DIR, "model")``. An MLflow no-code deployment loads the folder
that holds the ``MLmodel`` file. Models registered before this layout (their files directly in
the version folder) keep working: their ``MLmodel`` is found at the top.
"""

from __future__ import annotations

from pathlib import Path

from batchpoint.exceptions import ValidationError

#: what a source path ends with when it names no folder (a data store root): the files go here
DEFAULT_FOLDER = "model"


def version_dir(models_dir: Path, name: str, version: str) -> Path:
    """The folder of one model version: ``AZUREML_MODEL_DIR``."""
    return Path(models_dir) / name / version


def original_name(source_path: str) -> str:
    """The registered folder's (or file's) own name: the last part of its path in its store."""
    name = source_path.rstrip("/").rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") else DEFAULT_FOLDER


def copy_target(root: Path, source_path: str, is_file: bool) -> Path:
    """Where the files of a registration go: a folder under its own name inside the version
    folder; a single file directly in it (the copier adds the file's name)."""
    return root if is_file else root / original_name(source_path)


def mlflow_dir(root: Path) -> Path:
    """The folder with the ``MLmodel`` file of an MLflow model version (the version folder itself
    for a model registered before this layout)."""
    if (root / "MLmodel").is_file():
        return root
    found = sorted(p.parent for p in root.glob("*/MLmodel"))
    if not found:
        raise ValidationError(f"model folder '{root.name}' has no MLmodel file; give the folder written by "
                              "mlflow.<flavor>.save_model, or register it with type custom_model")
    return found[0]
