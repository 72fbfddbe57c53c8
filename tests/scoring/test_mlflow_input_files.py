"""The files an MLflow deployment without a scoring script reads, as Azure documents them: tables
(``.csv``, ``.parquet``, ``.pqt``) as DataFrames, images (``.png``, ``.jpg``, ``.jpeg``, ``.tiff``,
``.bmp``, ``.gif``) as arrays shaped for the model's tensor signature; any other type refused naming
those. The scorer runs here in-process, as a worker runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PIL = pytest.importorskip("PIL.Image")


class _ImageStats:
    """A stand-in image model: for each image in the batch, its mean pixel and its shape."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - mlflow's PythonModel shape
        batch = np.asarray(model_input)
        return pd.DataFrame({"mean": batch.reshape(batch.shape[0], -1).mean(axis=1),
                             "shape": [str(batch.shape)] * batch.shape[0], "dtype": [str(batch.dtype)] * batch.shape[0]})


def _save_model(path: Path, shape: tuple[int, ...] | None, dtype: str = "uint8", columns: bool = False) -> str:
    import mlflow.pyfunc
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return _ImageStats().predict(context, model_input)

    signature = None
    if columns:
        signature = ModelSignature(inputs=Schema([ColSpec("double", "age"), ColSpec("double", "chol")]))
    elif shape:
        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(dtype), shape)]))
    # requirements given: mlflow does not start a process to infer them
    mlflow.pyfunc.save_model(str(path), python_model=Model(), signature=signature, pip_requirements=["numpy"])
    return str(path)


def _scorer(model_dir: str):
    from batchpoint.scoring.scorers import MlflowScorer

    scorer = MlflowScorer(model_dir)
    scorer.init()
    return scorer


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 90
    made = {}
    for ext in ("png", "jpg", "jpeg", "tiff", "bmp", "gif"):
        made[ext] = folder / f"pic.{ext}"
        PIL.fromarray(rgb).save(made[ext])
    made["grey"] = folder / "grey.png"
    PIL.fromarray(np.full((28, 28), 7, dtype=np.uint8)).save(made["grey"])
    return made


def test_every_documented_image_type_reaches_a_tensor_model(tmp_path: Path, images: dict[str, Path]) -> None:
    scorer = _scorer(_save_model(tmp_path / "rgb", (-1, -1, -1, 3), "float32"))
    for ext in ("png", "jpg", "jpeg", "tiff", "bmp", "gif"):
        out = scorer.run([str(images[ext])])
        assert list(out.columns) == ["row", "prediction", "file"] and len(out) == 1
        mean, shape, dtype = out.loc[0, "prediction"]
        assert (shape, dtype) == ("(1, 4, 6, 3)", "float32"), ext  # the batch axis added, cast to the spec
        assert mean == pytest.approx(30, abs=2), ext  # (90 + 0 + 0) / 3, within JPEG's loss
        assert out.loc[0, "file"] == f"pic.{ext}"


def test_an_image_is_reshaped_to_a_fixed_tensor(tmp_path: Path, images: dict[str, Path]) -> None:
    scorer = _scorer(_save_model(tmp_path / "mnist", (-1, 28, 28, 1), "float32"))
    out = scorer.run([str(images["grey"])])
    assert out.loc[0, "prediction"][1:] == ["(1, 28, 28, 1)", "float32"]
    with pytest.raises(Exception, match=r"pic.png' \(an image of shape \(4, 6, 3\)\) does not fit .*\(-1, 28, 28, 1\)"):
        scorer.run([str(images["png"])])


def test_without_a_signature_the_pixels_stay_uint8(tmp_path: Path, images: dict[str, Path]) -> None:
    scorer = _scorer(_save_model(tmp_path / "plain", None))
    out = scorer.run([str(images["png"])])
    assert out.loc[0, "prediction"][1:] == ["(4, 6, 3)", "uint8"]


def test_other_types_are_refused_naming_the_supported_ones(tmp_path: Path, heart_model_dir: Path) -> None:
    from batchpoint.scoring.readers import FileReadError

    scorer = _scorer(str(heart_model_dir))
    for name, text in (("rows.json", "[]"), ("rows.jsonl", "{}"), ("notes.txt", "x"), ("rows.tsv", "a\tb")):
        (tmp_path / name).write_text(text)
        with pytest.raises(FileReadError) as caught:
            scorer.run([str(tmp_path / name)])
        message = str(caught.value)
        assert f"type '{Path(name).suffix}'" in message and ".csv, .parquet, .pqt" in message and ".png" in message
        assert caught.value.failure_kind == "input"
    frame = pd.read_csv(Path(__file__).resolve().parents[2] / "examples" / "heart" / "data" / "heart-unlabeled-0.csv")
    frame.to_parquet(tmp_path / "rows.pqt")
    assert len(scorer.run([str(tmp_path / "rows.pqt")])) == len(frame)


def test_an_image_for_a_column_model_is_refused(tmp_path: Path, images: dict[str, Path]) -> None:
    from batchpoint.scoring.readers import FileReadError

    scorer = _scorer(_save_model(tmp_path / "columns", None, columns=True))
    with pytest.raises(FileReadError, match="column-based: an MLflow model that takes images needs a tensor signature"):
        scorer.run([str(images["png"])])
