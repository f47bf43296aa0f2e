"""A heavy read's answer (the calls list, the reports): computed in an API
worker process when the bot has a pool (`http.api_workers` > 0), else here
on the loop. Beside both the handlers' context and the pool, so neither
imports the other.
"""

from __future__ import annotations

from aiohttp import web

from voicebot.api.body import Job
from voicebot.api.context import journal_api
from voicebot.api.request_gate import busy
from voicebot.api.worker_pool import WorkerError, WorkerLost
from voicebot.logs import get_logger


async def answer(request: web.Request, job: Job) -> web.Response:
    """The handlers' one way to compute a heavy read: in a worker when the
    bot has a pool (`http.api_workers` > 0), else here on the loop."""
    api = journal_api(request)
    if api.workers is None:
        return (await job.body(api.call_log)).response()
    try:
        body = await api.workers.run(job)
    except WorkerLost as lost:
        get_logger().warning(
            "api_worker.lost", method=request.method, path=request.path, error=str(lost)
        )
        return busy("busy: the worker computing this answer stopped, retry later")
    except WorkerError as error:
        get_logger().error(
            "api_worker.failed", method=request.method, path=request.path, error=str(error)
        )
        raise web.HTTPInternalServerError() from None
    return body.response()
