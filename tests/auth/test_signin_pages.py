"""The sign-in callback's pages look like the status page, say what to do next and link back to it
(issue 27, row 8)."""
from urllib.parse import urljoin

from connector.auth.pages import STATUS_LINK, sign_in_failed_page, signed_in_page
from connector.auth.signin import SignedIn
from connector.ops.status_page import STYLE

CALLBACK = "https://app.example/api/auth/callback"


def test_the_signed_in_page_is_styled_names_the_next_step_and_links_back_to_the_status_page():
    page = signed_in_page(SignedIn("default", "ada@contoso.com", [{"id": "c1", "name": "CRONUS"}], "c1", ""))
    assert f"<style>{STYLE}</style>" in page and 'name="viewport"' in page
    assert "<h2>Next</h2>" in page and "POST /api/connections/default/subscriptions" in page
    assert f'href="{STATUS_LINK}"' in page and urljoin(CALLBACK, STATUS_LINK) == "https://app.example/api/status"


def test_the_failed_page_is_styled_says_how_to_try_again_and_links_back():
    page = sign_in_failed_page("Entra ID did not sign you in: consent_required")
    assert f"<style>{STYLE}</style>" in page and 'class="bad"' in page
    assert "Sign in" in page and f'href="{STATUS_LINK}"' in page
