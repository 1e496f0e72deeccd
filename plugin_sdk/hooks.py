"""The hooks carehub calls, in pluggy's terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pluggy

from plugin_sdk.notify import Channel

PROJECT = "carehub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """Every hook a plugin may implement."""

    @hookspec
    def carehub_notification_channels(self, config: Mapping[str, str]) -> Sequence[Channel]:
        """The notification channels this plugin delivers through (email, SMS, push ...).

        ``config`` holds the operator's channel settings: each ``CAREHUB_CHANNEL_<KEY>`` environment variable as
        ``<key>`` in lower case (``CAREHUB_CHANNEL_SMTP_HOST`` -> ``smtp_host``). Return an empty sequence when the
        settings your channel needs are absent; raise ``ValueError`` naming the key when one is present but wrong.
        In-app delivery is built in and always on.
        """
        raise NotImplementedError
