"""Turn the JSON lines ``sitecustomize.py`` records into ``recorded_calls.md``: every request the
real client sent, in order, per step (ids and secrets shortened to placeholders).

usage: python to_markdown.py STEP=calls.jsonl [STEP=calls.jsonl ...] > ../recorded_calls.md
"""

from __future__ import annotations

import json
import re
import sys
from urllib.parse import urlsplit

_WS = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
                 r"workspaces/[^/?]+", re.IGNORECASE)


def _short(text: str) -> str:
    text = _WS.sub("{ws}", text)
    text = re.sub(r"https://127\.0\.0\.1:\d+", "{server}", text)
    text = re.sub(r"\b11111111-2222-3333-4444-555555555555\b", "{sub}", text)
    text = re.sub(r"sig=[0-9a-f]{64}", "sig={signature}", re.sub(r"se=\d+", "se={expiry}", text))
    return re.sub(r"batchjob-[0-9a-f]{8}-[0-9a-f]{4}", "{job}", text)


def main() -> None:
    print("# The calls azure-ai-ml 1.35.2 makes in tests/server/azure_api/client_flow.py\n")
    print("Recorded by `tests/server/azure_api/recorder/sitecustomize.py` (azure-core's requests transport wrapped in")
    print("the client's process) during `test_real_client.py`; regenerate with `recorder/to_markdown.py`.")
    print("`{ws}` is `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/")
    print("workspaces/<ws>`; repeated cloud-metadata reads are folded into one line.\n")
    for arg in sys.argv[1:]:
        step, _, path = arg.partition("=")
        print(f"## {step}\n")
        print("| # | status | method | path | body |\n|---|---|---|---|---|")
        n, last = 0, None
        for line in open(path):
            call = json.loads(line)
            url = urlsplit(call["url"])
            target = _short(url.path + (f"?{url.query}" if url.query else ""))
            if "/metadata/endpoints" in target and last == target:
                continue
            last = target
            n += 1
            body = _short(json.dumps(call["body"], sort_keys=True)) if call["body"] else ""
            body = body.replace("|", "\\|")
            print(f"| {n} | {call['status']} | {call['method']} | `{target}` | {f'`{body}`' if body else ''} |")
        print()


if __name__ == "__main__":
    main()
