"""tritonserver's output copied to a log whose folder does not exist yet (out/ in a fresh clone)."""

from __future__ import annotations

import io

from sotai.serving.server import _LogTap


def test_the_log_folder_is_made_and_every_line_kept(tmp_path):
    log = tmp_path / "out" / "nested" / "triton.log"
    tap = _LogTap(io.BytesIO(b"I1203 started\nE1203 model failed\n"), log)
    tap.run()
    assert log.read_bytes() == b"I1203 started\nE1203 model failed\n"
    assert list(tap.tail) == ["I1203 started\n", "E1203 model failed\n"]


def test_an_unwritable_log_still_drains_the_pipe_and_says_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tap = _LogTap(io.BytesIO(b"line\n"), blocker / "triton.log")
    tap.run()
    assert "cannot write the Triton log" in tap.tail[0] and tap.tail[-1] == "line\n"
