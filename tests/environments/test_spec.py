"""What a conda file, a requirements list or MLflow's python_env.yaml turn into (pure parsing):
every line this machine cannot honour is listed with what was used instead, never dropped."""

from __future__ import annotations

import platform
from datetime import UTC, datetime

import pytest

from batchpoint.environments.index import IndexFile, PinReport, exclude_newer, nearest, no_build_message
from batchpoint.environments.resolve import from_inline, from_model
from batchpoint.environments.spec import EnvironmentSpec, conda_python, parse_conda, with_worker_needs
from batchpoint.exceptions import ValidationError
from packaging.version import Version

AZURE_CONDA = """
name: model-env
channels:
  - conda-forge
  - defaults
dependencies:
  - python=3.8.5
  - pip=20.2.4
  - numpy=1.21
  - scikit-learn==1.0.2=py38_0
  - cudatoolkit=11.3
  - pip:
    - azureml-defaults==1.38.0
    - xgboost==1.4.2
    - --extra-index-url https://example.org/simple
    - git+https://github.com/x/y.git
"""


def test_conda_file_azure_shape():
    reqs, notes = parse_conda(AZURE_CONDA, "conda.yml")
    assert reqs == ["numpy==1.21.*", "scikit-learn==1.0.2", "azureml-defaults==1.38.0", "xgboost==1.4.2"]
    text = "\n".join(notes)
    assert "'python=3.8.5': the environment is built for that Python when this machine has it, else resolved for " \
           "it and adapted to this machine's Python" in text
    assert conda_python(AZURE_CONDA) == "3.8.5"
    assert from_inline({"conda_file": AZURE_CONDA}, "x").python == "3.8.5"
    assert "channels (conda-forge, defaults) are not used" in text
    assert "'pip=20.2.4': the environment's seeded pip is used instead" in text
    assert "conda-only package 'cudatoolkit=11.3' is not installed" in text
    assert "'scikit-learn==1.0.2=py38_0' is installed from the package index as 'scikit-learn==1.0.2' " \
           "(build string dropped)" in text
    assert "option '--extra-index-url https://example.org/simple' is not used" in text
    assert "'git+https://github.com/x/y.git' is not installed" in text


def test_bad_conda_and_requirement_lines_are_errors_naming_them():
    with pytest.raises(ValidationError, match="'numpy=>1.0' is not a valid requirement"):
        parse_conda({"dependencies": [{"pip": ["numpy=>1.0"]}]}, "conda.yml")
    with pytest.raises(ValidationError, match="is a file name; send the file's content"):
        from_inline({"conda_file": "conda.yml"}, "the deployment's inline environment")
    with pytest.raises(ValidationError, match="neither conda_file nor requirements"):
        from_inline({}, "the deployment's inline environment")


def test_hash_ignores_order_and_notes_but_not_versions():
    a = EnvironmentSpec("a", ("numpy==1.26.4", "Scikit_Learn==1.1.3"), ("note",))
    b = EnvironmentSpec("b", ("scikit-learn==1.1.3", "numpy==1.26.4"))
    c = EnvironmentSpec("c", ("scikit-learn==1.1.2", "numpy==1.26.4"))
    index = ["http://127.0.0.1:1/simple"]
    assert a.hash(index) == b.hash(index) != c.hash(index)
    assert a.hash(index) != a.hash(["https://mirror.example/simple"])


def test_worker_needs_are_added_only_when_missing():
    spec = with_worker_needs(EnvironmentSpec("x", ("scikit-learn==1.1.3",)), needs_mlflow=True)
    assert spec.requirements[-2:] == ("pandas", "mlflow-skinny")
    kept = with_worker_needs(EnvironmentSpec("x", ("pandas==1.5.3", "mlflow==2.3.0")), needs_mlflow=True)
    assert kept.requirements == ("pandas==1.5.3", "mlflow==2.3.0")


def test_mlflow_model_files_in_order(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "conda.yaml").write_text("dependencies: [python=3.8, {pip: [mlflow==2.3.0, scikit-learn==1.0]}]\n")
    spec = from_model(str(tmp_path))
    assert spec.source == "the model's conda.yaml" and spec.requirements == ("mlflow-skinny==2.3.0",
                                                                             "scikit-learn==1.0")
    assert spec.python == "3.8"
    (tmp_path / "requirements.txt").write_text("mlflow==2.3.0\nscikit-learn==1.0.2\n")
    (tmp_path / "python_env.yaml").write_text("python: 3.8.5\nbuild_dependencies: [pip==23.0]\n"
                                              "dependencies: [-r requirements.txt]\n")
    spec = from_model(str(tmp_path))
    assert spec.source == "the model's python_env.yaml"
    assert spec.requirements == ("mlflow-skinny==2.3.0", "scikit-learn==1.0.2")
    assert any("python 3.8.5: the environment is built for that Python" in n for n in spec.notes)
    assert spec.python == "3.8.5"
    assert from_model(str(tmp_path / "nothing")) is None


def _wheel(version: str, tag: str, when: str = "2022-01-01T00:00:00Z") -> IndexFile:
    return IndexFile(f"pkg-{version}-{tag}.whl", Version(version), True, frozenset({tag}), None,
                     datetime.fromisoformat(when.replace("Z", "+00:00")))


def test_nearest_versions_and_the_no_build_message():
    here = "py3-none-any"
    files = [_wheel("1.0", "cp27-cp27m-manylinux1_x86_64"), _wheel("0.8", here), _wheel("0.9", here),
             _wheel("1.2", here), _wheel("1.3", here), _wheel("2.0", here)]
    assert nearest(files, Version("1.0")) == (["0.9", "0.8"], ["1.2", "1.3"])
    message = no_build_message("pkg", Version("1.0"), files, "conda.yml")
    assert f"pkg==1.0 (from conda.yml) has no build for Python {platform.python_version()}" in message
    assert "its wheels are for cp27" in message and "1.2 (newer), 1.3 (newer), 0.9 (older), 0.8 (older)" in message


def test_exclude_newer_rule_is_named():
    cutoff, rule = exclude_newer(PinReport(cutoff=datetime(2024, 2, 9, 5, 57, 57, tzinfo=UTC),
                                           newest_pin="mlflow-skinny==2.10.2", no_upload_time=[]))
    assert cutoff == "2024-02-09T05:57:58Z" and "(mlflow-skinny==2.10.2)" in rule
    assert exclude_newer(PinReport(no_upload_time=[]))[0] is None
    none, why = exclude_newer(PinReport(no_upload_time=["a==1"]))
    assert none is None and "gives no upload times for a==1" in why


TENSOR_SIGNATURE = ('signature:\n  inputs: \'[{"type": "tensor", "tensor-spec": {"dtype": "float32", '
                    '"shape": [-1, 28, 28]}}]\'\n  outputs: null\n')
COLUMN_SIGNATURE = ('signature:\n  inputs: \'[{"type": "double", "name": "age"}, {"type": "long", "name": "sex"}]\'\n'
                    '  outputs: \'[{"type": "long"}]\'\n')


@pytest.mark.parametrize(("signature", "requirements", "added"), [
    (TENSOR_SIGNATURE, "mlflow==2.8.0\ntensorflow==2.13.0\n", True),  # an image model: Pillow reads its files
    (TENSOR_SIGNATURE, "mlflow==2.8.0\nPillow==9.5.0\n", False),  # named already, at the model's own pin
    (COLUMN_SIGNATURE, "mlflow==2.8.0\nscikit-learn==1.2.2\n", False),  # column models are refused images
    ("", "mlflow==2.8.0\nscikit-learn==1.2.2\n", False),  # no signature: nothing is known about its input
])
def test_a_tensor_signature_model_gets_pillow_for_its_image_files(tmp_path, signature, requirements, added):
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.tensorflow\n" + signature)
    (tmp_path / "requirements.txt").write_text(requirements)
    spec = from_model(str(tmp_path))
    pillows = [r for r in spec.requirements if r.lower().startswith("pillow")]
    assert pillows == (["pillow"] if added else [r for r in requirements.split() if r.lower().startswith("pillow")])
    assert any("pillow added" in n for n in spec.notes) is added
