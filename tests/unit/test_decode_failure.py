"""decode_failure: what a plugin that exited non-zero printed becomes a CNIError."""

from __future__ import annotations

import pytest

from cnilib.errors import ErrorCode, PluginError, PluginOutputError
from cnilib.invoke import decode_failure


class TestInvalidUTF8:
    """Go's encoding/json replaces invalid UTF-8 inside strings with U+FFFD; so does cnilib,
    for error objects."""

    def test_error_object_keeps_its_code_and_message(self) -> None:
        """An invalid byte in ``msg`` does not turn the plugin's answer into garbage."""
        stdout = b'{"cniVersion":"1.0.0","code":7,"msg":"bad \xff byte","details":"d\xfe"}'

        err = decode_failure(stdout, b"", "exit status 1", 1)

        assert isinstance(err, PluginError)
        assert ErrorCode.INVALID_NETWORK_CONFIG == err.code
        assert "bad \ufffd byte" == err.msg
        assert "d\ufffd" == err.details

    def test_each_invalid_byte_becomes_one_replacement(self) -> None:
        """As Go's decoder does, every invalid byte is its own U+FFFD (a truncated
        three-byte sequence gives two), and valid multi-byte text is kept."""
        stdout = b'{"code":100,"msg":"\xc3\xa9\xe2\x82 ok \xe2\x82\xac"}'

        err = decode_failure(stdout, b"", "exit status 1", 1)

        assert isinstance(err, PluginError)
        assert 100 == err.code
        assert "é\ufffd\ufffd ok €" == err.msg

    def test_invalid_byte_outside_a_string_is_still_garbage(self) -> None:
        """Leniency is for string contents: an invalid byte in the JSON syntax itself
        is not an error object (Go: invalid character)."""
        stdout = b'{"code":7,\xff"msg":"x"}'

        err = decode_failure(stdout, b"", "exit status 1", 1)

        assert isinstance(err, PluginOutputError)
        assert str(err).startswith("netplugin failed but error parsing its diagnostic message")
        assert 1 == err.returncode

    @pytest.mark.parametrize("stdout", [b"\xff\xfe", b'{"code":7,"msg":"x"'])
    def test_garbage_is_reported_with_libcni_wording(self, stdout: bytes) -> None:
        """Output that is no JSON object at all still reads as libcni's parse failure."""
        err = decode_failure(stdout, b"", "exit status 1", 1)

        assert isinstance(err, PluginOutputError)
        assert stdout == err.stdout
