"""The view state every page shares, and the address that reproduces it.

One dict in ``st.session_state`` (:data:`STATE_KEY`) holds what a researcher has chosen: the run,
layer, filter, AU, statistic, the *distinct* switch and the Overview's open tab. Every view's
widgets are drawn from it and write back to it (:func:`selectbox`, :func:`toggle`, :func:`radio`,
:func:`tabs`), so a choice made in one view
is there in the next, and :func:`sync_url` writes it into the query parameters after every run, so
a copied link opens the same view (``/fau-map?run=...&layer=features.conv3&filter=12&au=AU12``).

Widget keys belong to one view (Streamlit forgets the state of a widget that a run does not draw);
the shared dict is never forgotten. A widget's value is set from the dict before it is drawn, and
its ``on_change`` callback copies the user's choice back before the script runs.

The address is read once per browser session (:func:`read_url`). Values it names that the run does
not have (an unknown run, layer, filter or AU) are kept as notes (:func:`notes`) that the page shows
in words instead of falling back silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

STATE_KEY = "fercore_view"
NOTES_KEY = "fercore_url_notes"
_URL_READ = "fercore_url_read"
#: Query parameter of each shared value (the run by its directory name).
PARAMS = ("run", "layer", "filter", "au", "stat", "distinct", "tab")


def view() -> dict:
    """The shared view state of this browser session (created empty)."""
    return st.session_state.setdefault(STATE_KEY, {})


def get(name: str, default=None):
    return view().get(name, default)


def put(name: str, value) -> None:
    view()[name] = value


def notes() -> list[str]:
    """Messages about values in the address that could not be used (shown by the frame)."""
    return st.session_state.setdefault(NOTES_KEY, [])


def note(text: str) -> None:
    if text not in notes():
        notes().append(text)


def read_url() -> dict:
    """The shared values named in the address, read once per session (later runs: {}).

    ``filter`` becomes an int, ``au`` the AU number (``AU12`` or ``12``), ``distinct`` a bool;
    unreadable values become notes."""
    if st.session_state.get(_URL_READ):
        return {}
    st.session_state[_URL_READ] = True
    out = {}
    qp = st.query_params
    for name in PARAMS:
        raw = qp.get(name)
        if raw is None or raw == "":
            continue
        if name == "filter":
            try:
                out[name] = int(raw.lstrip("#"))
            except ValueError:
                note(f"The address asks for filter `{raw}`, which is not a filter number; the first filter is shown.")
        elif name == "au":
            try:
                out[name] = int(raw.upper().removeprefix("AU"))
            except ValueError:
                note(f"The address asks for AU `{raw}`, which is not an AU (write it as AU12 or 12).")
        elif name == "distinct":
            out[name] = raw.lower() in ("1", "true", "yes", "on")
        else:
            out[name] = raw
    return out


def sync_url(run_name: str | None) -> None:
    """Write the shared values into the address (only those set), so a link reproduces the view."""
    v = view()
    want = {"run": run_name} if run_name else {}
    for name in PARAMS[1:]:
        value = v.get(name)
        if value is None:
            continue
        if name == "au":
            value = f"AU{int(value)}"
        elif name == "distinct":
            value = "1" if value else "0"
        want[name] = str(value)
    have = {k: st.query_params.get(k) for k in st.query_params}
    if have != want:
        st.query_params.from_dict(want)


def _bind(key: str, name: str, value, on_change: Callable[[], None] | None):
    """Set widget ``key`` from the shared value and return the callback that writes it back."""
    st.session_state[key] = value

    def changed() -> None:
        put(name, st.session_state[key])
        if on_change is not None:
            on_change()

    return changed


def _valid(name: str, options: list, default):
    """The shared value ``name`` made one of ``options`` (``default`` when it is unset or not
    among them, else the first option) and stored back."""
    value = get(name)
    if value not in options:
        value = default if default in options else options[0]
        put(name, value)
    return value


def selectbox(where, label: str, options: Sequence, *, name: str, key: str, default=None,
              on_change: Callable[[], None] | None = None, **kw):
    """A selectbox bound to the shared value ``name`` (``default`` when it is unset or not among
    ``options``). ``where`` is ``st`` or a container. Returns the chosen option."""
    options = list(options)
    cb = _bind(key, name, _valid(name, options, default), on_change)
    return where.selectbox(label, options, key=key, on_change=cb, **kw)


def radio(where, label: str, options: Sequence, *, name: str, key: str, default=None, **kw):
    """A radio group bound to the shared value ``name`` (see :func:`selectbox`)."""
    options = list(options)
    cb = _bind(key, name, _valid(name, options, default), None)
    return where.radio(label, options, key=key, on_change=cb, **kw)


def toggle(where, label: str, *, name: str, key: str, default: bool = False, **kw) -> bool:
    """A toggle bound to the shared value ``name``."""
    value = get(name)
    if not isinstance(value, bool):
        value = bool(default)
        put(name, value)
    cb = _bind(key, name, value, None)
    return bool(where.toggle(label, key=key, on_change=cb, **kw))


def tabs(where, labels: dict[str, str], *, name: str, key: str) -> dict:
    """Tabs bound to the shared value ``name`` (one of ``labels``' keys, e.g. ``"curves"`` for
    "Learning curves"; the first when unset). Only the open tab is drawn by the caller: returns
    {key: container}, each container's ``.open`` saying whether it is the chosen tab, so a page
    computes and sends the content of one tab instead of all (a click on another tab reruns)."""
    slugs = list(labels)
    st.session_state[key] = labels[_valid(name, slugs, None)]
    by_label = {label: slug for slug, label in labels.items()}

    def changed() -> None:
        put(name, by_label[st.session_state[key]])

    return dict(zip(slugs, where.tabs(list(labels.values()), key=key, on_change=changed), strict=True))


#: Session-state key of a request to land on a filter's details in the Filters view.
LAND_KEY = "fercore_land_on_filter"


def land_on_filter(f: int) -> None:
    """Ask the Filters view to bring filter ``f``'s details into view when it opens next (the FAU
    map's *Open filter*; the shared value ``filter`` says which filter it shows)."""
    st.session_state[LAND_KEY] = int(f)


def landing() -> int | None:
    """The filter a view asked the Filters view to land on, taken once (None when none was)."""
    return st.session_state.pop(LAND_KEY, None)
