"""The saelab kernel against Jupyter's own tools.

`jupyter_kernel_test` checks the messaging protocol (every reply validated
against the message spec); `nbclient` runs a real notebook the way
`jupyter nbconvert --execute` and papermill do; a `KernelManager` interrupts
a long cell and checks the session survived it.

tests/kernel.rs runs this file with the peer venv's Python after installing
the kernelspec into a temporary JUPYTER_PATH; by hand:

    saelab kernel install --prefix /tmp/k
    JUPYTER_PATH=/tmp/k/share/jupyter python tests/kernel_conformance.py -v
"""

import base64
import os
import pathlib
import time
import unittest

import jupyter_client
import jupyter_kernel_test
import nbclient
import nbformat

REPO = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 60


class SaelabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "saelab"
    language_name = "rhai"
    file_extension = ".rhai"

    code_hello_world = 'print("hello, world");'
    code_stderr = 'eprint("a warning");'
    code_clear_output = 'print("step 1"); clear_output(); print("step 2");'

    completion_samples = [
        {"text": "softm", "matches": {"softmax"}},
        {"text": "let kept_value = 1; kept_v", "matches": {"kept_value"}},
    ]

    complete_code_samples = ["1 + 1", "let x = 3;", "fn f(x) { x * 2 }"]
    incomplete_code_samples = ["fn f(x) {", "let y = [1, 2,", "let s = \"open"]
    invalid_code_samples = ["let = 3;\nlet y = 2;"]

    code_page_something = ":help tensor"
    code_inspect_sample = "tensor"

    code_generate_error = "let y = undefined_variable + 1;"

    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "let a = [1, 2]; a.len()", "result": "2"},
    ]
    # `search` is answered too, but jupyter_client leaves out the fields it
    # does not set (`n`, `unique`) and jupyter-protocol's HistoryRequest
    # needs them, so such a request cannot be parsed and is dropped.
    code_history_pattern = "6 * *"
    supported_history_operations = ("tail", "range")

    code_display_data = [
        {"code": "figure().line([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]).show();", "mime": "image/png"},
        {"code": "table([#{feature: 1, l0: 12.5}]);", "mime": "text/html"},
    ]


def png_size(data):
    """(width, height) of base64 PNG data, checking it is a PNG."""
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


class QuickstartNotebook(unittest.TestCase):
    """nbclient runs notebooks/quickstart.ipynb as `nbconvert --execute` would."""

    def test_every_cell_runs_and_the_figure_is_an_inline_png(self):
        notebook = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
        nbformat.validate(notebook)  # the converter writes valid nbformat 4.5
        workdir = pathlib.Path(os.environ.get("SAELAB_TEST_WORKDIR", "."))
        client = nbclient.NotebookClient(
            notebook,
            kernel_name="saelab",
            timeout=300,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
        outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
        texts = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        self.assertIn("gradient of sum(w*w) equals 2w: true", texts)
        self.assertIn("mean max cosine similarity", texts)
        images = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
        self.assertGreaterEqual(len(images), 1, "no figure came back as image/png")
        width, height = png_size(images[-1])
        self.assertGreater(width, 100)
        self.assertGreater(height, 100)
        tables = [o for o in outputs if "text/html" in o.get("data", {})]
        self.assertGreaterEqual(len(tables), 1, "table() should show as HTML")


class InterruptThroughTheClient(unittest.TestCase):
    """A long cell is interrupted the way JupyterLab's stop button does it,
    and the next cell still sees what earlier cells defined."""

    def setUp(self):
        self.km, self.kc = jupyter_client.manager.start_new_kernel(kernel_name="saelab")

    def tearDown(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel()

    def test_an_interrupted_loop_keeps_the_session(self):
        self.kc.execute_interactive("let kept = 7;", timeout=TIMEOUT)
        msg_id = self.kc.execute("let i = 0; loop { i += 1; }")
        # Interrupt once the cell runs (an interrupt at an idle kernel is forgotten).
        while True:
            msg = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] == "execute_input" and msg["parent_header"].get("msg_id") == msg_id:
                break
        time.sleep(0.3)
        self.km.interrupt_kernel()
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "Interrupted")
        results = []
        self.kc.execute_interactive(
            "kept + 1",
            timeout=TIMEOUT,
            output_hook=lambda msg: results.append(msg),
        )
        values = [
            m["content"]["data"]["text/plain"] for m in results if m["msg_type"] == "execute_result"
        ]
        self.assertEqual(values, ["8"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
