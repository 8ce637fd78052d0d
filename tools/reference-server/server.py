"""The stack chatlog replaces, as a baseline for `chatlog bench load`: the tutorial's classic
Socket.IO group chat on python-socketio (aiohttp), with the same events and payloads.

    python server.py --port 3300                 # relays only, as the tutorial's server does
    python server.py --port 3300 --sqlite F.db   # saves each message to SQLite first, as the
                                                 # tutorial does for scroll-back (WAL, one
                                                 # durable commit per message)

join-group joins the Socket.IO room; send-group-message broadcasts to the room (the sender
included) with the row id as `id` (null when relaying only) and acknowledges {ok, id}, so the
load generator can measure acknowledged sends against it as against chatlog.
"""

import argparse
import asyncio
import sqlite3

import socketio
from aiohttp import web


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3300)
    parser.add_argument("--sqlite", help="save each message to this SQLite database before broadcasting it")
    args = parser.parse_args()

    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", max_http_buffer_size=100_000)
    app = web.Application()
    sio.attach(app)
    db = None
    if args.sqlite:
        db = sqlite3.connect(args.sqlite, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, room TEXT, username TEXT, "
                   "message TEXT, created INTEGER, client_id TEXT)")
    usernames = {}

    @sio.on("join-group")
    async def join_group(sid, data):
        usernames[sid] = data.get("username")
        await sio.enter_room(sid, data["group"])
        return {"ok": True, "group": data["group"]}

    @sio.on("send-group-message")
    async def send_group_message(sid, data):
        message_id = None
        if db is not None:
            cursor = db.execute("INSERT INTO messages (room, username, message, created, client_id) VALUES (?, ?, ?, ?, ?)",
                                (data["group"], usernames.get(sid), data["message"], data.get("created"), data.get("client_id")))
            message_id = cursor.lastrowid
        await sio.emit("send-group-message", {
            "group": data["group"], "message": data["message"], "username": usernames.get(sid),
            "created": data.get("created"), "id": message_id, "client_id": data.get("client_id"),
        }, room=data["group"])
        return {"ok": True, "id": message_id}

    @sio.on("user-typing")
    async def user_typing(sid, data):
        await sio.emit("user-typing", usernames.get(sid), room=data["group"])

    @sio.on("leave-group")
    async def leave_group(sid, data):
        await sio.leave_room(sid, data["group"])
        await sio.emit("user-left", usernames.get(sid), room=data["group"])

    @sio.event
    async def disconnect(sid, reason=None):
        usernames.pop(sid, None)

    async def serve():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # the bound port, also for --port 0
        print(f"listening on http://{args.host}:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
