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
#audit-state {
    color: $error;
    padding: 0 1;
}
.bg-row {
    height: auto;
}
#profile {
    width: 30;
}
#reason, #pin {
    width: 1fr;
}
#code {
    width: 26;
}
#start, #end-grant, #end-now {
    margin-left: 1;
}
#bg-hint {
    color: $text-muted;
    padding: 0 1;
}
#bg-touch {
    text-style: bold;
    color: $accent;
    padding: 0 1;
}
#bg-error {
    color: $error;
    text-style: bold;
    padding: 0 1;
}
#grant {
    display: none;
    height: auto;
    border: thick $error;
    padding: 0 1;
}
#shown-once {
    width: 100%;
    color: $error;
    text-style: bold;
}
#credentials {
    height: 6;
}
#grant-row {
    height: auto;
}
#grant-countdown {
    width: 1fr;
    color: $warning;
    padding: 1 0;
}
#grants-title {
    padding: 0 1;
    text-style: bold;
}
#grants {
    height: auto;
    max-height: 8;
}
ApprovalDialog, UnlockDialog {
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
