"""BC answers carry a `Date` from the emulator's clock, so a client can judge expiry on BC's time."""
from email.utils import parsedate_to_datetime

import requests


def test_bc_responses_are_dated_by_the_emulator_clock(make_emulator):
    emu = make_emulator()
    token = emu.entra.issue_access_token(emu.config.clients[0].client_id, "lmints.io")
    url = f"{emu.bc_base('lmints.io', 'production')}/companies"
    headers = {"Authorization": f"Bearer {token}"}
    before = parsedate_to_datetime(requests.get(url, headers=headers, verify=emu.ca_bundle,
                                                timeout=10).headers["Date"])
    emu.clock.advance(2 * 24 * 3600)
    token = emu.entra.issue_access_token(emu.config.clients[0].client_id, "lmints.io")
    after = parsedate_to_datetime(requests.get(url, headers={"Authorization": f"Bearer {token}"},
                                               verify=emu.ca_bundle, timeout=10).headers["Date"])
    assert (after - before).total_seconds() >= 2 * 24 * 3600 - 5
