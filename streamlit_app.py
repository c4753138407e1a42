"""FraudLens entry point: a router only. Refuse unsafe starts, sign in, then show the pages
the principal's role may use. A page the role may not use is absent from the menu; opening it
by URL reaches a hidden page that the router (and the page itself) deny and audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.shell.auth import NO_ROLE, can, current_principal, demo_active, deny, startup_problem

HERE = Path(__file__).parent
DEMO_BANNER = "Demo mode — synthetic data, sign-in disabled, loopback only"


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    url_path: str
    permission: str


PAGES = (
    PageSpec("app_pages/home.py", "Home", ":material/home:", "home", "cases"),
    PageSpec("app_pages/case_explorer.py", "Case Explorer", ":material/search:", "cases", "cases"),
    PageSpec("app_pages/global_patterns.py", "Global Patterns", ":material/explore:", "patterns",
             "patterns"),
    PageSpec("app_pages/model_comparison.py", "Model Comparison", ":material/compare_arrows:",
             "compare", "compare"),
    PageSpec("app_pages/pattern_review.py", "Pattern Review", ":material/hub:", "review",
             "review"),
    PageSpec("app_pages/monitoring.py", "Monitoring", ":material/monitoring:", "monitoring",
             "patterns"),
    PageSpec("app_pages/experiments.py", "Experiments", ":material/science:", "experiments",
             "compare"),
    PageSpec("app_pages/audit_trail.py", "Audit Trail", ":material/shield:", "audit", "audit"),
)

# Page icons are Streamlit's bundled Material Symbols (emoji render as boxes in a browser
# without an emoji font). The favicon is a file served by the app itself: a ":material/…:"
# favicon would make every browser fetch it from fonts.gstatic.com.
FAVICON = str(HERE / "app/shell/favicon.png")
st.set_page_config(page_title="FraudLens", page_icon=FAVICON, layout="wide")

problem = startup_problem()
if problem:
    st.error(problem)
    st.stop()
if demo_active():
    st.warning(DEMO_BANNER, icon=":material/science:")

principal = current_principal()
if principal is None:
    # Only the sign-in page exists for an anonymous visitor: a deep link to any page renders it
    # too (hidden aliases, so the browser is not told "page not found").
    sign_in = HERE / "app_pages/sign_in.py"
    st.navigation(
        [st.Page(sign_in, title="Sign in", url_path="sign_in", default=True)]
        + [st.Page(sign_in, title="Sign in", url_path=p.url_path, visibility="hidden")
           for p in PAGES],
        position="hidden").run()
    st.stop()

with st.sidebar:
    # Names and emails come from the identity provider: shown as plain text, never markdown.
    st.text(principal.name)
    st.text(f"{principal.email} · role: {principal.role}")
    if not demo_active() and st.button("Sign out", icon=":material/logout:",
                                       key="fraudlens_sign_out"):
        st.session_state.clear()
        st.logout()

if principal.role == NO_ROLE:
    deny(principal, "FraudLens", "cases")
    st.stop()

available = [p for p in PAGES if (HERE / p.path).is_file()]
if not any(can(principal, p.permission) for p in available):
    st.error("No FraudLens page is installed for your role.")
    st.stop()
allowed_first = sorted(available, key=lambda p: not can(principal, p.permission))
pages = [
    (spec, st.Page(HERE / spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                   visibility="visible" if can(principal, spec.permission) else "hidden"))
    for spec in allowed_first
]
# The app root runs the first page through a hidden alias: Streamlit serves its default page
# only at "/", so were Home the default, /home would say "Page not found".
first = allowed_first[0]
pages.append((first, st.Page(HERE / first.path, title=first.title, icon=first.icon,
                             url_path="start", default=True, visibility="hidden")))
selected = st.navigation([page for _, page in pages])
st.set_page_config(page_icon=FAVICON)  # not the page's Material icon (a font CDN request)
spec = next(spec for spec, page in pages if page is selected)
if not can(principal, spec.permission):
    deny(principal, spec.title, spec.permission)
    st.stop()
selected.run()
