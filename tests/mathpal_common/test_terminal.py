"""What the terminal shows: library noise hidden unless asked for."""

from __future__ import annotations

import logging
import warnings

from mathpal_common.terminal import library_noise


def test_library_noise_hides_warnings_and_logs_below_error_unless_debugging(caplog):
    library = logging.getLogger("torchao")
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with library_noise():
            library.warning("Failed to load _C_mxfp8.so")
            library.error("a real failure")
            warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
        library.warning("after")
        with library_noise(debug=True):
            library.warning("debugging")
            warnings.warn("visible", UserWarning, stacklevel=1)
    assert [r.getMessage() for r in caplog.records] == ["a real failure", "after", "debugging"]
    assert [str(w.message) for w in shown] == ["visible"]
