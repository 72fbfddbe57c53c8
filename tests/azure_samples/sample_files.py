"""Folders laid out as Azure's batch samples lay theirs out (``Azure/azureml-examples``,
``cli/endpoints/batch/deploy-models/<sample>`` and ``sdk/python/endpoints/batch/deploy-models/<sample>``):
the same files, YAML fields, conda-file idioms and scoring-script shapes, written here (not copied).

What differs from the shipped samples, and why (docs/azure-compatibility.md, "Azure's samples"):
the conda files pin the versions the tests' local package index serves (the shipped ones pin
``mlflow`` and ``azureml-core``, ~110 packages resolved for Python 3.8, which CI cannot download);
the scripts assign ``JOB_NAME=$(...)`` (the shipped ones write ``JOB_NAME = $(...)``, which bash runs
as a command named JOB_NAME and ``set -e`` stops there, on Azure too) and register the MLflow model
from ``deployment-simple/model`` (the shipped heart script names ``model``, a folder that sample does
not have at its top); the scoring scripts do not reuse a global they assign in ``run()`` (the
shipped heart ``batch_driver.py`` raises UnboundLocalError there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import HEART_UNLABELED

CONDA = """\
channels:
- conda-forge
dependencies:
- python=3.8.5
- pip
- pip:
{pins}
name: mlflow-env
"""

#: Azure's idiom: a random suffix makes the endpoint's name unique
NAME_SUFFIX = """\
ENDPOINT_SUFIX=$(cat /dev/urandom | tr -dc 'a-zA-Z0-9' | fold -w ${1:-5} | head -n 1)
ENDPOINT_NAME="$ENDPOINT_NAME-$ENDPOINT_SUFIX"
"""

CHECK_STATUS = """\
STATUS=$(az ml job show -n $JOB_NAME --query status -o tsv)
echo $STATUS
if [[ $STATUS == "Completed" ]]
then
  echo "Job completed"
elif [[ $STATUS ==  "Failed" ]]
then
  echo "Job failed"
  exit 1
else
  echo "Job status not failed or completed"
  exit 2
fi
"""


def conda_file(pins: list[str]) -> str:
    return CONDA.format(pins="\n".join(f"  - {p}" for p in pins))


MLFLOW_DRIVER = '''\
import os
import glob
import mlflow
import pandas as pd


def init():
    global model
    global input_types

    # the folder registered as the model is the only one under AZUREML_MODEL_DIR
    model_path = glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/")[0]
    model = mlflow.pyfunc.load_model(model_path)
    input_types = None
    if model.metadata and model.metadata.signature and model.metadata.signature.inputs:
        schema = model.metadata.signature.inputs
        input_types = dict(zip(schema.input_names(), schema.pandas_types()))


def run(mini_batch):
    print(f"run method start: {__file__}, run({len(mini_batch)} files)")
    data = pd.concat(
        map(lambda fp: pd.read_csv(fp).assign(filename=os.path.basename(fp)), mini_batch)
    )
    features = data.drop("filename", axis=1)
    if input_types:
        features = features.astype(input_types)
    pred = pd.DataFrame({"prediction": model.predict(features)}, index=data.index)
    return pd.concat([data, pred], axis=1)
'''

PARQUET_DRIVER = '''\
import os
import glob
import pickle
from pathlib import Path
from typing import List

import pandas as pd


def init():
    global model
    global output_path

    output_path = os.environ["AZUREML_BI_OUTPUT_PATH"]
    model_file = glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/*.pkl")[-1]
    with open(model_file, "rb") as file:
        model = pickle.load(file)


def run(mini_batch: List[str]):
    for file_path in mini_batch:
        data = pd.read_csv(file_path)
        data["prediction"] = model.predict(data)
        data.to_parquet(os.path.join(output_path, Path(file_path).stem + ".parquet"))
    return mini_batch
'''

ENDPOINT_YML = """\
$schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json
name: heart-classifier-batch
description: A heart condition classifier for batch inference
auth_mode: aad_token
"""

DEPLOYMENT_SETTINGS = """\
compute: azureml:batch-cluster
resources:
  instance_count: 2
settings:
  max_concurrency_per_instance: 1
  mini_batch_size: 2
  output_action: {action}
{output_file}  retry_settings:
    max_retries: 3
    timeout: 300
  error_threshold: -1
  logging_level: info
"""


def _deployment(name: str, model: str, description: str, action: str, code: str | None) -> str:
    text = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
endpoint_name: heart-classifier-batch
name: {name}
description: {description}
type: model
model: {model}
"""
    if code:
        text += f"""\
environment:
  name: batch-mlflow-xgboost
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
  conda_file: environment/conda.yaml
code_configuration:
  code: code
  scoring_script: {code}
"""
    output_file = "  output_file_name: predictions.csv\n" if action == "append_row" else ""
    return text + DEPLOYMENT_SETTINGS.format(action=action, output_file=output_file)


def heart_mlflow_cli(root: Path, model: Path, pins: list[str]) -> Path:
    """``cli/endpoints/batch/deploy-models/heart-classifier-mlflow``: a no-code MLflow deployment
    (``deployment-simple``) and one with a scoring script (``deployment-custom``), a data asset from
    ``data/``, and ``deploy-and-run.sh``."""
    sample = root / "heart-classifier-mlflow"
    shutil.copytree(HEART_UNLABELED, sample / "data")
    shutil.copytree(model, sample / "deployment-simple" / "model")
    (sample / "endpoint.yml").write_text(ENDPOINT_YML)
    (sample / "heart-dataset-unlabeled.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\n"
        "name: heart-dataset-unlabeled\ndescription: An unlabeled dataset for heart classification.\n"
        "type: uri_folder\npath: data\n")
    (sample / "deployment-simple" / "deployment.yml").write_text(_deployment(
        "classifier-xgboost-mlflow", "azureml:heart-classifier-mlflow@latest",
        "A heart condition classifier based on XGBoost", "append_row", None))
    custom = sample / "deployment-custom"
    (custom / "code").mkdir(parents=True)
    (custom / "code" / "batch_driver.py").write_text(MLFLOW_DRIVER)
    (custom / "environment").mkdir()
    (custom / "environment" / "conda.yaml").write_text(conda_file(pins))
    (custom / "deployment.yml").write_text(_deployment(
        "classifier-xgboost-custom", "azureml:heart-classifier-mlflow@latest",
        "A heart condition classifier based on XGBoost", "append_row", "batch_driver.py"))
    (sample / "deploy-and-run.sh").write_text(f"""\
set -e

ENDPOINT_NAME="heart-classifier"
{NAME_SUFFIX}
MODEL_NAME='heart-classifier-mlflow'
az ml model create --name $MODEL_NAME --type "mlflow_model" --path "deployment-simple/model"

az ml data create -f heart-dataset-unlabeled.yml

echo "Creating compute"
az ml compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 5

echo "Creating batch endpoint $ENDPOINT_NAME"
az ml batch-endpoint create -n $ENDPOINT_NAME -f endpoint.yml
az ml batch-endpoint show --name $ENDPOINT_NAME

az ml batch-deployment create --file deployment-simple/deployment.yml --endpoint-name $ENDPOINT_NAME --set-default

DEPLOYMENT_NAME="classifier-xgboost-mlflow"
az ml batch-endpoint update --name $ENDPOINT_NAME --set defaults.deployment_name=$DEPLOYMENT_NAME
az ml batch-deployment show --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME

echo "Invoking batch endpoint"
JOB_NAME=$(az ml batch-endpoint invoke --name $ENDPOINT_NAME --input azureml:heart-dataset-unlabeled@latest --query name -o tsv)
echo "JOB1=$JOB_NAME"
az ml job show -n $JOB_NAME --web
az ml batch-deployment list-jobs --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME --query [].name
az ml job stream -n $JOB_NAME
{CHECK_STATUS}
mkdir -p simple && cd simple
az ml job download --name $JOB_NAME --output-name score --download-path ./
cd ..

echo "Create a new batch deployment with custom logic"
az ml batch-deployment create --file deployment-custom/deployment.yml --endpoint-name $ENDPOINT_NAME

DEPLOYMENT_NAME="classifier-xgboost-custom"
JOB_NAME=$(az ml batch-endpoint invoke --name $ENDPOINT_NAME --deployment-name $DEPLOYMENT_NAME --input https://azuremlexampledata.blob.core.windows.net/data/heart-disease-uci/data --input-type uri_folder --query name -o tsv)
echo "JOB2=$JOB_NAME"
az ml job show -n $JOB_NAME --web
az ml job stream -n $JOB_NAME
{CHECK_STATUS}
mkdir -p custom && cd custom
az ml job download --name $JOB_NAME --output-name score --download-path ./
cd ..

az ml batch-endpoint delete --name $ENDPOINT_NAME --yes
""")
    return sample


def custom_outputs_parquet_cli(root: Path, pickled: Path, pins: list[str]) -> Path:
    """``cli/endpoints/batch/deploy-models/custom-outputs-parquet``: a custom model (``model/model.pkl``)
    whose script writes one Parquet file per input into ``AZUREML_BI_OUTPUT_PATH`` (``summary_only``)."""
    sample = root / "custom-outputs-parquet"
    shutil.copytree(pickled, sample / "model")
    (sample / "code").mkdir(parents=True)
    (sample / "code" / "batch_driver.py").write_text(PARQUET_DRIVER)
    (sample / "environment").mkdir()
    (sample / "environment" / "conda.yaml").write_text(conda_file(pins + ["pyarrow==15.0.0"]))
    (sample / "endpoint.yml").write_text(ENDPOINT_YML)
    (sample / "deployment.yml").write_text(_deployment(
        "classifier-xgboost-custom", "azureml:heart-classifier-sklpipe@latest",
        "A heart condition classifier that writes its predictions into Parquet files.", "summary_only",
        "batch_driver.py"))
    (sample / "deploy-and-run.sh").write_text(f"""\
set -e

ENDPOINT_NAME="heart-classifier-custom"
{NAME_SUFFIX}
MODEL_NAME='heart-classifier-sklpipe'
az ml model create --name $MODEL_NAME --type "custom_model" --path "model"

az ml compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 5
az ml batch-endpoint create -n $ENDPOINT_NAME -f endpoint.yml
az ml batch-endpoint show --name $ENDPOINT_NAME
az ml batch-deployment create --file deployment.yml --endpoint-name $ENDPOINT_NAME --set-default

DEPLOYMENT_NAME="classifier-xgboost-custom"
az ml batch-endpoint update --name $ENDPOINT_NAME --set defaults.deployment_name=$DEPLOYMENT_NAME
az ml batch-deployment show --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME

JOB_NAME=$(az ml batch-endpoint invoke --name $ENDPOINT_NAME --input https://azuremlexampledata.blob.core.windows.net/data/heart-disease-uci/data --query name -o tsv)
echo "JOB1=$JOB_NAME"
az ml job show -n $JOB_NAME --web
az ml batch-deployment list-jobs --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME --query [].name
az ml job stream -n $JOB_NAME
{CHECK_STATUS}
az ml job download --name $JOB_NAME --output-name score --download-path ./

az ml batch-endpoint delete --name $ENDPOINT_NAME --yes
""")
    return sample


def notebook(path: Path, cells: list[str]) -> Path:
    """An .ipynb holding ``cells`` as code cells (nbformat 4)."""
    doc = {"nbformat": 4, "nbformat_minor": 2, "metadata": {"kernelspec": {"name": "python3"}},
           "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                      "source": cell.splitlines(keepends=True)} for cell in cells]}
    path.write_text(json.dumps(doc, indent=1))
    return path
