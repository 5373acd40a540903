"""Ctrl-C during a blocking Dask call: distributed's cancel callback is not shown to users."""

import logging

from drrgen.build.cluster import ClusterOptions, open_client


def test_the_sync_cancel_traceback_is_dropped_and_other_errors_are_kept(caplog):
    with open_client(ClusterOptions(workers=0)):
        pass
    logger = logging.getLogger("tornado.application")
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        logger.error("Exception in callback partial(<function sync.<locals>.cancel at 0x1>)")
        logger.error("Exception in callback something else")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Exception in callback something else"]
