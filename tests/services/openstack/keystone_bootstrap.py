"""Create what Heat and the tests need in a freshly bootstrapped Keystone (runs in the services venv).

Reads a JSON object on stdin (keystone_url, admin_password, heat_password, heat_url,
user, user_password, project) and prints a JSON object with the application credential.
python-keystoneclient rather than the ``openstack`` CLI: one process, not ~2.5 s per call.
"""

from __future__ import annotations

import json
import sys

from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client


def _session(url: str, user: str, password: str, project: str) -> session.Session:
    auth = v3.Password(
        auth_url=f"{url}/v3",
        username=user,
        password=password,
        project_name=project,
        user_domain_id="default",
        project_domain_id="default",
    )
    return session.Session(auth=auth)


def main() -> None:
    p = json.load(sys.stdin)
    url = p["keystone_url"]
    ks = client.Client(session=_session(url, "admin", p["admin_password"], "admin"))
    roles = {r.name: r for r in ks.roles.list()}
    for name in ("heat_stack_owner", "heat_stack_user"):
        if name not in roles:
            roles[name] = ks.roles.create(name)

    # Ids, not objects, everywhere: keystoneclient's getid() probes ``.uuid``, which lazy-loads
    # each object with an extra GET.
    service_project = ks.projects.create("service", domain="default").id
    heat = ks.users.create(
        "heat", domain="default", password=p["heat_password"], default_project=service_project
    )
    ks.roles.grant(roles["admin"].id, user=heat.id, project=service_project)

    orchestration = ks.services.create("heat", type="orchestration", description="Heat (test rig)").id
    for interface in ("public", "internal", "admin"):
        ks.endpoints.create(
            orchestration, f"{p['heat_url']}/v1/%(tenant_id)s", interface=interface, region="RegionOne"
        )

    # The learner-facing account the provider acts as: no admin anywhere.
    labs = ks.projects.create(p["project"], domain="default").id
    user = ks.users.create(p["user"], domain="default", password=p["user_password"], default_project=labs)
    for role in ("member", "heat_stack_owner"):
        ks.roles.grant(roles[role].id, user=user.id, project=labs)

    # An application credential must be created by its own user, with a token scoped to the project.
    own = client.Client(session=_session(url, p["user"], p["user_password"], p["project"]))
    cred = own.application_credentials.create(
        "labxblock-tests", user=user.id, description="labxblock test rig"
    )
    json.dump(
        {
            "application_credential_id": cred.id,
            "application_credential_secret": cred.secret,
            "user_id": user.id,
            "project_id": labs,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
