"""All TUI styles (kept in Python so they ship with the package without package data)."""

from __future__ import annotations

CSS = """
#heading {
    width: 100%;
    padding: 0 1;
    background: $primary;
    color: $text;
    text-style: bold;
}
#daemon, #connection {
    padding: 0 1;
    height: 1;
}
#connection {
    color: $text-muted;
}
#profiles, #events {
    width: 100%;
    height: 1fr;
}
ApprovalDialog {
    align: center middle;
}
#dialog {
    width: 76;
    height: auto;
    padding: 1 2;
    border: thick $warning;
    background: $surface;
}
#dialog Label, #dialog Static {
    width: 100%;
}
#queue {
    color: $text-muted;
    text-align: right;
}
#title {
    text-style: bold;
    margin-bottom: 1;
}
#countdown {
    margin-top: 1;
    color: $warning;
}
#touch {
    text-style: bold;
    color: $accent;
}
#keys {
    color: $text-muted;
}
#hint {
    color: $error;
}
#buttons {
    height: auto;
    align-horizontal: right;
}
#buttons Button {
    margin-left: 2;
}
"""
