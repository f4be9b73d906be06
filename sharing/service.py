"""Sharing services, the one way in: the router, the relay, the app and the tests import this
module. It only re-exports; each job has its own module:

- `sharing.roles`: who may do what (the role lists, with the rules in words);
- `sharing.agreements`: reading agreements, their status at a moment, who may read or change one;
- `sharing.lifecycle`: create and edit a draft, put it in force, end or revoke it;
- `sharing.attachments`: the signed agreement (PDF) attached and read back;
- `sharing.coverage`: which cameras agreements in force share, with whom (also for the register);
- `sharing.grants`: whether a recipient may watch a shared camera live or its recordings now;
- `sharing.recordings`: the shared recordings a recipient may list, and the audit of a viewing;
- `sharing.sessions`: recipients' stream sessions, opened, re-checked and ended;
- `sharing.report`: the DPO's per-agreement report.
"""

from __future__ import annotations

from sharing.agreements import (
    agreement_read,
    effective,
    in_force_at,
    list_agreements,
    read_agreement,
)
from sharing.attachments import add_document, read_document
from sharing.coverage import agreements_covering, list_shared_cameras, recipients_in_force
from sharing.grants import (
    RecordingsGrant,
    StreamGrant,
    authorise_recordings,
    authorise_stream,
)
from sharing.lifecycle import TRANSITIONS, change_status, create_agreement, update_agreement
from sharing.recordings import record_recording_view, shared_recordings
from sharing.report import agreement_report, report_csv
from sharing.roles import (
    ACTIVATE_ROLES,
    CREATE_ROLES,
    DOCUMENT_WRITERS,
    END_ROLES,
    OWNER_READERS,
    RECIPIENT_DOCUMENT_READERS,
    RECIPIENT_READERS,
    REPORT_ROLES,
    SESSION_ENDERS,
    SHARED_LIST_ROLES,
    VIEWER_ROLES,
)
from sharing.sessions import (
    close_sessions_left_open,
    end_session,
    get_session_row,
    open_session,
    record_play,
    session_for_end,
    session_still_allowed,
)

__all__ = [
    "ACTIVATE_ROLES",
    "CREATE_ROLES",
    "DOCUMENT_WRITERS",
    "END_ROLES",
    "OWNER_READERS",
    "RECIPIENT_DOCUMENT_READERS",
    "RECIPIENT_READERS",
    "REPORT_ROLES",
    "SESSION_ENDERS",
    "SHARED_LIST_ROLES",
    "TRANSITIONS",
    "VIEWER_ROLES",
    "RecordingsGrant",
    "StreamGrant",
    "add_document",
    "agreement_read",
    "agreement_report",
    "agreements_covering",
    "authorise_recordings",
    "authorise_stream",
    "change_status",
    "close_sessions_left_open",
    "create_agreement",
    "effective",
    "end_session",
    "get_session_row",
    "in_force_at",
    "list_agreements",
    "list_shared_cameras",
    "open_session",
    "read_agreement",
    "read_document",
    "recipients_in_force",
    "record_play",
    "record_recording_view",
    "report_csv",
    "session_for_end",
    "session_still_allowed",
    "shared_recordings",
    "update_agreement",
]
