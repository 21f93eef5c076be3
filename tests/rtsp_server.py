"""A real RTSP server for the rtsp probe's tests: gst-rtsp-server on loopback.

Run with the system Python (Debian's python3-gst-1.0 and gir1.2-gst-rtsp-server-1.0
are not in the venv):

    RTSP_TEST_PASSWORD=... /usr/bin/python3 tests/rtsp_server.py --open 8554 --basic 8555 --digest 8556

Each port serves /stream1: on ``--open`` to anyone, on ``--basic`` and ``--digest``
only to user ``viewer`` (password from RTSP_TEST_PASSWORD), challenging with that
scheme. gst-rtsp-server answers 404, not 401, when an anonymous client asks for a
mount its role may not see, so the auth mounts get servers of their own whose
anonymous clients have no role at all. Prints "ready" once every port listens.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=1 ! video/x-raw,format=I420,width=320,height=240,framerate=5/1 "
            "! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
USER = "viewer"


def factory(role: str | None) -> GstRtspServer.RTSPMediaFactory:
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(PIPELINE)
    f.set_shared(True)
    perms = GstRtspServer.RTSPPermissions()
    roles = ("anonymous", "user") if role is None else (role,)
    for r in roles:
        perms.add_permission_for_role(r, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role(r, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    f.set_permissions(perms)
    return f


def token(role: str) -> GstRtspServer.RTSPToken:
    t = GstRtspServer.RTSPToken()
    t.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    return t


def server(port: int, method: GstRtsp.RTSPAuthMethod | None, password: str) -> GstRtspServer.RTSPServer:
    srv = GstRtspServer.RTSPServer()
    srv.set_address("127.0.0.1")
    srv.set_service(str(port))
    if method is not None:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(method)
        if method == GstRtsp.RTSPAuthMethod.BASIC:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(USER, password), token("user"))
        else:
            auth.add_digest(USER, password, token("user"))
        srv.set_auth(auth)
    srv.get_mount_points().add_factory("/stream1", factory("user" if method is not None else None))
    return srv


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", type=int, required=True)
    parser.add_argument("--basic", type=int)
    parser.add_argument("--digest", type=int)
    args = parser.parse_args()
    password = os.environ.get("RTSP_TEST_PASSWORD", "")

    Gst.init(None)
    servers = [server(args.open, None, password)]
    if args.basic:
        servers.append(server(args.basic, GstRtsp.RTSPAuthMethod.BASIC, password))
    if args.digest:
        servers.append(server(args.digest, GstRtsp.RTSPAuthMethod.DIGEST, password))
    for srv in servers:
        if srv.attach(None) == 0:
            print(f"cannot listen on {srv.get_service()}", flush=True)
            return 1

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
