"""Who may do what under a sharing agreement (the owner is the organisation whose cameras are
shared):

- create and edit a draft: the owner's facility managers, admin;
- put in force: the owner's DPO (an organisation assigned to them), admin;
- end (`expired`) or revoke: the owner's facility managers, DPO, admin;
- read: the owner's facility managers, DPO, admin (every status); every user of the recipient
  organisation (not drafts);
- watch a shared camera: `police` and `operator` users of the recipient, while an agreement in
  force covers the camera and the owner's policy allows live view; open sessions are re-checked
  every few seconds (`sharing.sessions.session_still_allowed`);
- the per-agreement report: the owner's DPO, admin.
"""

from __future__ import annotations

from vms.core.models import Role

CREATE_ROLES = (Role.admin, Role.facility_manager)
ACTIVATE_ROLES = (Role.admin, Role.dpo)
END_ROLES = (Role.admin, Role.facility_manager, Role.dpo)
OWNER_READERS = (Role.admin, Role.facility_manager, Role.dpo)
RECIPIENT_READERS = tuple(Role)
DOCUMENT_WRITERS = (Role.admin, Role.facility_manager, Role.dpo)
# The recipient's DPO keeps the agreement too; its operators and police need not read it.
RECIPIENT_DOCUMENT_READERS = (Role.admin, Role.dpo)
REPORT_ROLES = (Role.admin, Role.dpo)
VIEWER_ROLES = (Role.police, Role.operator)
SHARED_LIST_ROLES = tuple(Role)
SESSION_ENDERS = (Role.police, Role.operator, Role.admin)
