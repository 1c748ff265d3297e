"""The ceiling: a bare aiohttp app on uvloop answering a small JSON body. ``python -m bench.hello PORT``"""

import sys

import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=b'{"hello":"world"}', content_type="application/json")


app = web.Application()
app.router.add_get("/", hello)

if __name__ == "__main__":
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=lambda *_: None)
