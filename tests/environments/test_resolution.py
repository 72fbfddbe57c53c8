"""Issue 21 §1: environments resolved as Azure resolves them, then adapted to this machine.

Azure builds the Python a conda file asks for (``python=3.8.5``) and pip picks the releases that
support it. Here: resolved for that Python (``uv pip compile --python-version``), then each release
with no wheel for this machine's Python moves to the nearest version that has one, paired packages
together (torch/torchvision, tensorflow/keras, mlflow/mlflow-skinny), every change in the log and
the build's record. Without a requested Python the exclude-newer rule stays, but never excludes the
exact dependencies of a pinned release, never keeps a release with no wheel here when a newer one
has one, and a failed build names the package that failed.

The packages are stand-ins (``tests/fixtures/local_index_packages.py``): tiny wheels with the real
releases' names, versions, upload times, ``Requires-Python``, wheel tags and dependencies, served
by a private local index — the shapes of the rules without the real downloads.
"""

from __future__ import annotations

import ensurepip
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpoint.environments.build import Builder, EnvironmentBuildError
from batchpoint.environments.resolve import from_inline
from batchpoint.environments.spec import EnvironmentSpec
from batchpoint.settings import Settings
from fixtures.local_index import LocalIndex
from fixtures.local_index_packages import Release, cp, publish

PY = platform.python_version()
ALL = cp("38", "39", "310", "311")
UP_TO_310 = cp("38", "39", "310")
FROM_39 = cp("39", "310", "311", "312")

RELEASES = [
    # the seed, as uv venv --seed and conda install it
    Release("wheel", "0.38.4", "2020-01-01T00:00:00Z", requires_python=">=3.7"),
    # Azure's heart sample, 2022: scikit-learn 1.1.2 has no cp311 wheel (1.1.3 is the first)
    Release("scikit-learn", "1.1.2", "2022-08-04T10:00:00Z", UP_TO_310, ["numpy>=1.17.3"], ">=3.8"),
    Release("scikit-learn", "1.1.3", "2022-10-25T10:00:00Z", ALL, ["numpy>=1.17.3"], ">=3.8"),
    Release("numpy", "1.23.5", "2022-11-20T10:00:00Z", ALL, [], ">=3.8"),
    Release("numpy", "1.24.3", "2023-04-22T10:00:00Z", ALL, [], ">=3.8"),
    Release("numpy", "1.24.4", "2023-06-26T10:00:00Z", ALL, [], ">=3.8"),
    # numpy's releases for Python >= 3.9 after 1.24.4 (real dates, with their source archives, as on PyPI):
    # each is one more conflict for uv's resolver on Python 3.8, which then decides numpy before tensorflow
    *[Release("numpy", v, d, FROM_39, [], ">=3.9", sdist=True) for v, d in [
        ("1.25.0", "2023-06-17T10:00:00Z"), ("1.25.1", "2023-07-08T10:00:00Z"), ("1.25.2", "2023-07-31T10:00:00Z"),
        ("1.26.0", "2023-09-16T10:00:00Z"), ("1.26.1", "2023-10-14T10:00:00Z"), ("1.26.2", "2023-11-12T10:00:00Z"),
        ("1.26.3", "2024-01-02T10:00:00Z")]],
    Release("numpy", "1.26.4", "2024-02-05T10:00:00Z", FROM_39, [], ">=3.9"),
    # pandas 2.0.3's numpy requirements, by Python, as the real release has them
    Release("pandas", "2.0.3", "2023-06-28T10:00:00Z", ALL,
            ["numpy>=1.20.3; python_version < '3.10'", "numpy>=1.21.0; python_version >= '3.10'",
             "numpy>=1.23.2; python_version >= '3.11'"], ">=3.8"),
    Release("pandas", "2.2.2", "2024-04-10T10:00:00Z", FROM_39, ["numpy>=1.23.2"], ">=3.9"),
    # mlflow pins mlflow-skinny exactly; 2.17.2's was uploaded 2.5 min after it; 2.17.2 is the last for 3.8
    Release("mlflow", "2.17.2", "2024-11-12T16:00:00Z", requires=["mlflow-skinny==2.17.2", "pandas<3"],
            requires_python=">=3.8"),
    Release("mlflow-skinny", "2.17.2", "2024-11-12T16:02:30Z", requires_python=">=3.8"),
    Release("mlflow", "2.20.0", "2025-01-23T10:00:00Z", requires=["mlflow-skinny==2.20.0", "pandas<3"],
            requires_python=">=3.9"),
    Release("mlflow-skinny", "2.20.0", "2025-01-23T10:02:00Z", requires_python=">=3.9"),
    Release("azureml-mlflow", "1.57.0", "2024-08-01T10:00:00Z", requires=["mlflow-skinny"], requires_python=">=3.8"),
    Release("azureml-mlflow", "1.60.0", "2025-03-01T10:00:00Z", requires=["mlflow-skinny"], requires_python=">=3.9"),
    # tensorflow: 2.13 is the last for Python 3.8 (with Keras 2); 2.16 brings Keras 3; 2.10 has no cp311
    Release("tensorflow", "2.10.0", "2022-09-06T10:00:00Z", UP_TO_310, ["keras>=2.10.0,<2.11"], ">=3.7"),
    Release("keras", "2.10.0", "2022-09-06T09:00:00Z", requires_python=">=3.7"),
    # 2.11.1 (no cp311) takes any numpy >= 1.20; 2.12 and 2.13 bound numpy from above, as the real ones do
    Release("tensorflow", "2.11.1", "2023-03-17T10:00:00Z", UP_TO_310, ["keras>=2.11.0,<2.12", "numpy>=1.20"],
            ">=3.7"),
    Release("keras", "2.11.0", "2022-11-14T10:00:00Z", requires_python=">=3.7"),
    Release("tensorflow", "2.12.0", "2023-03-22T10:00:00Z", ALL, ["keras>=2.12.0,<2.13", "numpy>=1.22,<1.24"],
            ">=3.8"),
    Release("keras", "2.12.0", "2023-03-21T10:00:00Z", requires_python=">=3.8"),
    Release("tensorflow", "2.13.1", "2023-09-26T10:00:00Z", ALL, ["keras>=2.13.1,<2.14", "numpy>=1.22,<=1.24.3"],
            ">=3.8"),
    Release("keras", "2.13.1", "2023-06-27T10:00:00Z", requires_python=">=3.8"),
    Release("tensorflow", "2.16.1", "2024-03-08T10:00:00Z", FROM_39, ["keras>=3.0.0"], ">=3.9"),
    Release("keras", "3.0.0", "2023-11-28T10:00:00Z", requires_python=">=3.9"),
    # torch: torchvision pins torch exactly; torch 2.0.0 pins triton 2.0.0, uploaded 3 days later.
    # torch 1.13.1 is given a cp311 wheel here (the real one has none) so that only torchvision lacks
    # one: torch must still move with it
    Release("torch", "1.13.1", "2022-12-15T10:00:00Z", ALL, [], ">=3.7"),
    Release("torchvision", "0.14.1", "2022-12-15T11:00:00Z", UP_TO_310, ["torch==1.13.1"], ">=3.7"),
    Release("torch", "2.0.0", "2023-03-15T10:00:00Z", ALL,
            ["triton==2.0.0; platform_system == 'Linux' and platform_machine == 'x86_64'"], ">=3.8"),
    Release("triton", "2.0.0", "2023-03-18T10:00:00Z", ALL, [], None),
    Release("torchvision", "0.15.0", "2023-03-15T11:00:00Z", ALL, ["torch==2.0.0"], ">=3.8"),
    # an open dependency whose release of the cutoff's time has only a source archive for 3.11
    Release("sqlalchemy", "1.4.40", "2022-08-08T10:00:00Z", requires=["greenlet!=0.4.17"], requires_python=">=3.7"),
    Release("greenlet", "1.1.2", "2021-09-29T10:00:00Z", UP_TO_310, sdist=True, fail="greenlet.c:12: error"),
    Release("greenlet", "2.0.0", "2022-10-31T10:00:00Z", ALL),
    # an open dependency of the cutoff's time with only a source archive, which does not build on this
    # Python (llvmlite 0.39 refuses 3.11); its next release has a cp311 wheel
    Release("numbalike", "0.56.4", "2022-11-23T10:00:00Z", requires=["llvmlike>=0.39"]),
    Release("llvmlike", "0.39.1", "2022-09-01T10:00:00Z", [], sdist=True,
            fail="RuntimeError: Cannot install on Python version 3.11.7; only versions >=3.7,<3.11 are supported."),
    Release("llvmlike", "0.40.0", "2023-04-20T10:00:00Z", ALL),
    # a pin with only a source archive (it builds) that needs one whose build fails
    Release("oldpin", "1.0", "2021-01-01T00:00:00Z", [], ["brokenext"], sdist=True),
    Release("brokenext", "1.0", "2020-06-01T00:00:00Z", [], sdist=True, fail="brokenext.c:1: error: Python.h"),
    Release("tinypkg", "1.0", "2020-06-01T00:00:00Z"),
    # cryptography 46 / cffi as the huggingface sample resolves them: cffi 2 only for Python >= 3.9
    Release("cryptolike", "46.0.0", "2025-09-01T10:00:00Z", ALL,
            ["cffilike>=1.14; python_version < '3.9'", "cffilike>=2.0.0; python_version >= '3.9'"], ">=3.8"),
    Release("cffilike", "1.17.1", "2024-09-04T10:00:00Z", ALL, [], ">=3.8"),
    Release("cffilike", "2.1.1", "2025-09-08T10:00:00Z", FROM_39, [], ">=3.9"),
    # wheels for old Pythons only, in every version, and no source archive: nothing installs here
    Release("py38only", "1.0", "2021-01-01T00:00:00Z", cp("38")),
    Release("py38only", "1.1", "2021-06-01T00:00:00Z", cp("38", "39")),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    root = tmp_path_factory.mktemp("standin-index")
    (root / "index.json").write_text(json.dumps({"projects": {}}))
    idx = LocalIndex(root).start()
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    for wheel in sorted(bundled.glob("*.whl")):  # pip and setuptools, for the seed
        idx.add(wheel, "2020-01-01T00:00:00Z", ">=3.7")
    publish(idx, root / "made", RELEASES)
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


def _settings(tmp_path: Path, index: LocalIndex, uv_cache: Path, **more: Any) -> Settings:
    return Settings(home=tmp_path, environments={"index_url": index.url, "uv_cache_dir": str(uv_cache), **more})


def _build(settings: Settings, spec: EnvironmentSpec) -> tuple[dict[str, Any], str]:
    lines: list[str] = []
    built = Builder(settings).ensure(spec, lines.append)
    return built.record, "\n".join(lines)


def _conda(*pip: str, python: str = "3.8.5") -> EnvironmentSpec:
    conda = {"name": "model-env", "channels": ["conda-forge"],
             "dependencies": [f"python={python}", "pip", {"pip": list(pip)}]}
    return from_inline({"conda_file": conda, "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"},
                       "the deployment's inline environment")


def _versions(record: dict[str, Any]) -> dict[str, str]:
    return dict(p.lower().split("==") for p in record["packages"])


def _imported(record: dict[str, Any], module: str) -> str:
    python = Path(record.get("path") or "") / "bin" / "python"
    return subprocess.run([str(python), "-c", f"import {module}; print({module}.__version__)"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def _build_at(settings: Settings, spec: EnvironmentSpec) -> tuple[dict[str, Any], str]:
    record, log = _build(settings, spec)
    record["path"] = str(Builder(settings).path_for(spec))
    return record, log


# ---- resolved for the requested Python, adapted to this one ------------------------------------


def test_a_2022_py38_conda_file_resolves_as_azure_then_moves_only_what_has_no_wheel_here(tmp_path, index, uv_cache):
    spec = _conda("mlflow", "azureml-mlflow", "pandas", "scikit-learn==1.1.2")
    assert spec.python == "3.8.5"
    record, log = _build_at(_settings(tmp_path, index, uv_cache), spec)
    got = _versions(record)
    # what Azure's pip on Python 3.8 chooses for the open ones (not this machine's newest: mlflow 2.20,
    # pandas 2.2.2, numpy 1.26.4 need Python >= 3.9)
    assert got["mlflow"] == "2.17.2" and got["mlflow-skinny"] == "2.17.2" and got["azureml-mlflow"] == "1.57.0"
    assert got["pandas"] == "2.0.3" and got["numpy"] == "1.24.4"
    # scikit-learn 1.1.2 has no wheel for this Python: the nearest that has one
    assert got["scikit-learn"] == "1.1.3" and _imported(record, "scikit_learn") == "1.1.3"
    assert record["python_requested"] == "3.8.5" and record["python"] == PY
    assert record["resolved_for_python"] == "3.8.5"
    [change] = record["changes"]
    assert change.startswith(f"scikit-learn 1.1.2 -> 1.1.3: 1.1.2 has no wheel for Python {PY} "
                             "(cp311, manylinux_x86_64)")
    assert "its wheels are for cp310, cp38, cp39; 1.1.3 is the nearest version that has one (newer)" in change
    assert "resolved for Python 3.8.5, as the spec asks" in log and "no exclude-newer" in log
    assert "resolved for Python 3.8.5: " in log and "scikit-learn==1.1.2" in log
    assert "python: Python 3.8.5 is not listed in environments.pythons and uv-managed downloads are off" in log
    assert "changes from what was resolved for Python 3.8.5:" in log and f"  {change}" in log


def test_an_unpinned_tensorflow_gets_what_python_38_gets(tmp_path, index, uv_cache):
    record, log = _build_at(_settings(tmp_path, index, uv_cache), _conda("tensorflow"))
    got = _versions(record)
    # Azure (py3.8): TF 2.13 with Keras 2; this machine's newest would be TF 2.16 with Keras 3
    assert got["tensorflow"] == "2.13.1" and got["keras"] == "2.13.1", got
    assert record["changes"] == [] and "no changes: every release resolved for Python 3.8.5 installs" in log


def test_an_unpinned_tensorflow_beside_pandas_gets_what_pips_order_gets(tmp_path, index, uv_cache):
    # the mnist-classifier and imagenet-classifier samples' conda file (pandas, tensorflow, pillow, ...):
    # pip decides the spec's own requirements first (tensorflow 2.13.1, the newest for Python 3.8), then
    # numpy within 2.13.1's bound (1.24.3); resolved jointly, uv kept numpy 1.24.4 (pandas' newest) and
    # took tensorflow 2.11.1 (no bound on numpy, no cp311 wheel), which then moved to 2.12.0
    record, log = _build_at(_settings(tmp_path, index, uv_cache), _conda("pandas", "tensorflow"))
    got = _versions(record)
    assert got["tensorflow"] == "2.13.1" and got["keras"] == "2.13.1" and got["numpy"] == "1.24.3", got
    assert record["changes"] == [], record["changes"]
    assert ("tensorflow: 2.11.1 was resolved with the rest, 2.13.1 alone: pip, which decides the spec's own "
            "requirements first, takes 2.13.1; resolving again with tensorflow>=2.13.1") in log
    assert "resolved for Python 3.8.5: " in log and "tensorflow==2.13.1" in log


def test_a_dependency_whose_requirement_differs_by_python_is_changed_with_that_reason(tmp_path, index, uv_cache):
    # nothing moves (every release has a cp311 wheel), but on 3.11 cryptography needs cffi >= 2: the log
    # and the changes say why cffi differs from what was resolved for 3.8.5 (not "the moved releases")
    record, log = _build_at(_settings(tmp_path, index, uv_cache), _conda("cryptolike"))
    assert _versions(record)["cffilike"] == "2.1.1"
    assert record["changes"] == [f"cffilike 1.17.1 -> 2.1.1: the version resolved for Python 3.8.5 does not fit the "
                                 f"others on Python {PY} (their requirements differ by Python)"]
    assert "moved" not in log, log
    assert f"the versions resolved for Python 3.8.5 do not all fit together on Python {PY}" in log


def test_a_pinned_tensorflow_with_no_wheel_here_moves_with_its_keras(tmp_path, index, uv_cache):
    record, _ = _build_at(_settings(tmp_path, index, uv_cache), _conda("tensorflow==2.10.0", "keras==2.10.0"))
    got = _versions(record)
    assert got["tensorflow"] == "2.12.0" and got["keras"] == "2.12.0", got
    changes = "\n".join(record["changes"])
    assert "tensorflow 2.10.0 -> 2.12.0: 2.10.0 has no wheel for Python" in changes
    assert "keras 2.10.0 -> 2.12.0: moves with tensorflow" in changes


def test_torch_and_torchvision_move_together(tmp_path, index, uv_cache):
    record, _ = _build_at(_settings(tmp_path, index, uv_cache), _conda("torch==1.13.1", "torchvision==0.14.1"))
    got = _versions(record)
    # torchvision 0.14.1 has no cp311 wheel; 0.15.0 pins torch 2.0.0, so torch moves with it although
    # 1.13.1 (here) has one, and torch 2.0.0 brings triton
    assert got["torchvision"] == "0.15.0" and got["torch"] == "2.0.0" and got["triton"] == "2.0.0", got
    changes = "\n".join(record["changes"])
    assert "torchvision 0.14.1 -> 0.15.0: 0.14.1 has no wheel for Python" in changes
    assert "torch 1.13.1 -> 2.0.0: moves with torchvision" in changes
    assert "triton 2.0.0: added" in changes


def test_pins_with_no_wheel_here_move_without_a_requested_python_too(tmp_path, index, uv_cache):
    spec = EnvironmentSpec("a requirements list", ("torch==1.13.1", "torchvision==0.14.1"))
    record, log = _build_at(_settings(tmp_path, index, uv_cache), spec)
    got = _versions(record)
    assert got["torchvision"] == "0.15.0" and got["torch"] == "2.0.0" and got["triton"] == "2.0.0", got
    assert record["resolved_for_python"] == PY and record["python_requested"] is None
    assert "torch==1.13.1 is freed: it moves with torchvision" in log
    assert record["changes"][1] == "torch 1.13.1 -> 2.0.0: moves with torchvision", record["changes"]
    assert record["changes"][0].startswith("torchvision 0.14.1 -> 0.15.0: 0.14.1 has no wheel for Python")


# ---- the exclude-newer rule ---------------------------------------------------------------------


@pytest.mark.parametrize("pin, dependency, allowed", [
    ("mlflow==2.17.2", "mlflow-skinny==2.17.2", "2024-11-12T16:02:31Z"),  # uploaded 2.5 min after mlflow
    ("torch==2.0.0", "triton==2.0.0", "2023-03-18T10:00:01Z"),  # uploaded 3 days after torch
])
def test_the_exact_dependency_of_a_pinned_release_uploaded_later_is_not_excluded(tmp_path, index, uv_cache, pin,
                                                                                 dependency, allowed):
    record, log = _build_at(_settings(tmp_path, index, uv_cache), EnvironmentSpec("a requirements list", (pin,)))
    name, version = dependency.split("==")
    assert _versions(record)[name] == version
    assert record["exclude_newer_packages"][name] == allowed
    assert f"exclude-newer: {name} is allowed up to {allowed}: {pin} pins {dependency}, uploaded after the cutoff" \
        in log


def test_an_open_dependency_of_the_cutoffs_time_with_no_wheel_here_moves_to_the_first_that_has_one(
        tmp_path, index, uv_cache):
    record, log = _build_at(_settings(tmp_path, index, uv_cache),
                            EnvironmentSpec("a requirements list", ("sqlalchemy==1.4.40",)))
    # the cutoff (2022-08-08) gives greenlet 1.1.2, whose cp311 build is a source archive that fails;
    # 2.0.0 (after the cutoff) has a cp311 wheel
    assert record["rule"].startswith("resolution rule: exclude-newer 2022-08-08T10:00:01Z")
    assert _versions(record)["greenlet"] == "2.0.0"
    [change] = record["changes"]
    assert change.startswith("greenlet 1.1.2 -> 2.0.0: 1.1.2 has no wheel for Python") and \
        "its source archive would have to be built" in change


def test_an_open_dependency_whose_source_archive_fails_here_moves_to_the_first_with_a_wheel(tmp_path, index,
                                                                                             uv_cache):
    record, log = _build_at(_settings(tmp_path, index, uv_cache),
                            EnvironmentSpec("a requirements list", ("numbalike==0.56.4",)))
    assert _versions(record)["llvmlike"] == "0.40.0"
    [change] = record["changes"]
    assert change.startswith("llvmlike 0.39.1 -> 0.40.0: 0.39.1 has no wheel for Python") and \
        "0.40.0 is the nearest version that has one (newer)" in change
    assert "(llvmlike==0.39.1 failed above)" in log and "Cannot install on Python version 3.11.7" in log
    assert record["exclude_newer_packages"]["llvmlike"] == "2023-04-20T10:00:01Z"


def test_a_failed_build_names_the_package_that_failed(tmp_path, index, uv_cache):
    spec = EnvironmentSpec("a requirements list", ("oldpin==1.0",))
    with pytest.raises(EnvironmentBuildError) as caught:
        _build(_settings(tmp_path, index, uv_cache), spec)
    message = str(caught.value)
    assert message.startswith("uv failed (exit 1): brokenext==1.0 did not build from its source archive"), message
    assert "brokenext.c:1: error: Python.h" in message
    assert "oldpin==1.0 (from" not in message and caught.value.details["failed_package"] == "brokenext==1.0"


# ---- which Python -------------------------------------------------------------------------------


def test_a_listed_interpreter_is_used_for_its_version(tmp_path, index, uv_cache):
    from batchpoint.environments.python import base_python

    listed = tmp_path / "py311" / "python3"
    listed.parent.mkdir()
    os.symlink(base_python(), listed)
    settings = _settings(tmp_path, index, uv_cache, pythons=f"3.11={listed},3.8={tmp_path}/no-such/python")
    major_minor = ".".join(PY.split(".")[:2])
    record, log = _build_at(settings, _conda("tinypkg", python=major_minor))
    assert record["interpreter"] == str(listed) and record["interpreter_source"] == "listed in environments.pythons " \
        f"for {major_minor}"
    assert f"python: the spec asks for Python {major_minor}; Python {PY} ({listed}, listed in" in log
    # a listed interpreter that cannot run is said so, and the build goes on with this machine's
    record, log = _build_at(settings, _conda("tinypkg", python="3.8"))
    assert f"python: {tmp_path}/no-such/python (listed for 3.8 in environments.pythons) cannot be used" in log
    assert record["interpreter_source"] == "this machine's Python" and record["resolved_for_python"] == "3.8"


def test_python_downloads_that_cannot_be_reached_fall_back_to_this_machines_python(tmp_path, index, uv_cache):
    settings = _settings(tmp_path, index, uv_cache, python_downloads=True,
                         python_install_mirror="http://127.0.0.1:9/python-build-standalone")
    record, log = _build_at(settings, _conda("tinypkg", python="3.9.13"))
    assert "uv python install --no-config 3.9.13 --mirror http://127.0.0.1:9/" in log
    assert "python: downloading Python 3.9.13 with uv failed" in log
    assert record["python"] == PY and record["resolved_for_python"] == "3.9.13"


def test_the_pythons_setting_is_read_from_the_environment(monkeypatch):
    from batchpoint.environments.python import parse_pythons

    monkeypatch.setenv("BATCHPOINT_ENVIRONMENTS__PYTHONS", "3.8=/opt/py38/bin/python,3.9.13=/opt/py39/bin/python")
    assert parse_pythons(Settings().environments.pythons) == {"3.8": "/opt/py38/bin/python",
                                                              "3.9.13": "/opt/py39/bin/python"}
    with pytest.raises(ValueError, match="'3.8:/opt/py' is not VERSION=PATH"):
        parse_pythons("3.8:/opt/py")


def test_a_pin_no_version_of_which_installs_here_fails_before_uv_naming_it(tmp_path, index, uv_cache):
    with pytest.raises(EnvironmentBuildError) as caught:
        _build(_settings(tmp_path, index, uv_cache), EnvironmentSpec("a requirements list", ("py38only==1.0",)))
    assert str(caught.value) == (
        f"py38only==1.0 (from a requirements list) has no build for Python {PY} on this machine (cp311, "
        "manylinux_x86_64): its wheels are for cp38 and no source archive. Nearest versions that install here: none. "
        "Pin one of them, or use a machine with a Python that py38only 1.0 supports.")


def test_only_owners_see_the_interpreters_path(monkeypatch):
    from batchpoint.server.routers import environments as routes

    build = {"path": "/srv/env/abc", "interpreter": "/opt/py38/bin/python", "python": "3.8.20", "changes": ["x"]}
    monkeypatch.setattr(routes, "sees_server_paths", lambda request: False)
    assert routes._shown_build(dict(build), None) == {"python": "3.8.20", "changes": ["x"]}
    monkeypatch.setattr(routes, "sees_server_paths", lambda request: True)
    assert routes._shown_build(dict(build), None) == build
