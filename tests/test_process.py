"""How a failing tool is reported: one line, its cause, no secret."""

from __future__ import annotations

import signal

from snapctl.connectors._process import tool_failure


def test_a_tool_killed_by_a_signal_says_which() -> None:
    failure = tool_failure("pg_dump of 'default'", -signal.SIGXFSZ, "", ["pw"])
    assert str(failure) == ("pg_dump of 'default' was killed by SIGXFSZ (file size limit exceeded)")


def test_a_silent_failure_says_so() -> None:
    failure = tool_failure("mariadb-dump of 'default'", 2, "\n\n", [])
    assert str(failure) == "mariadb-dump of 'default' failed with exit status 2 and no message"


def test_the_error_line_keeps_its_detail_and_hides_secrets() -> None:
    stderr = (
        'pg_dump: error: Dumping the contents of table "t" failed: PQgetResult() failed.\n'
        "pg_dump: detail: Error message from server: FATAL: terminating connection; pw=s3cret\n"
        "pg_dump: detail: Command was: COPY t TO stdout;\n"
    )
    message = str(tool_failure("pg_dump", 1, stderr, ["s3cret"]))
    assert message.startswith("pg_dump failed (exit 1): pg_dump: error: Dumping the contents")
    assert "terminating connection" in message
    assert "s3cret" not in message and "***" in message
    assert "\n" not in message
