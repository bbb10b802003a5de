"""The `market` command's console: stored text reaches the terminal as the characters it holds."""

from __future__ import annotations

import io

from rich.styled import Styled
from rich.table import Table

from market.adapters.terminal import LiteralConsole, literal


def test_every_control_character_is_written_out_and_printable_text_is_kept():
    assert (
        literal("a\x00b\tc\nd\x1b[31me\x7ff\x85g\x9bh") == "a\\x00b\\x09c\\x0ad\\x1b[31me\\x7ff\\x85g\\x9bh"
    )
    assert literal("[bold]é ✓ :smile:[/bold]") == "[bold]é ✓ :smile:[/bold]"


def test_bidirectional_controls_are_written_out_so_text_shows_in_the_order_it_is_stored():
    spoofed = "\u202emoc.elpmaxe@ecila"  # on screen, read right to left: alice@example.com
    assert literal(spoofed) == "\\u202emoc.elpmaxe@ecila"
    for control in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069":
        assert literal(f"a{control}b") == f"a\\u{ord(control):04x}b"
    assert literal("שלום عربي ✓") == "שלום عربي ✓"  # right-to-left scripts themselves are text


def test_strings_in_titles_cells_and_styled_cells_print_literally_with_our_styles_kept():
    out = io.StringIO()
    console = LiteralConsole(file=out, width=200, force_terminal=True, color_system="standard")
    table = Table(title="[/x] \x1b]8;;https://evil.example\x1b\\", title_style="bold")
    table.add_column("[link=https://evil.example]h[/link]")
    table.add_row(Styled("[reverse blink]FAKE[/reverse blink] :warning:", "red"))
    console.print(table, "\x9b31m")
    shown = out.getvalue()
    assert "[/x] \\x1b]8;;https://evil.example\\x1b\\" in shown
    assert "[link=https://evil.example]h[/link]" in shown
    assert "[reverse blink]FAKE[/reverse blink] :warning:" in shown
    assert "\\x9b31m" in shown
    assert "\x1b[31m" in shown  # the style we gave, as the console's own escape
    assert "\x1b]8" not in shown and "\x9b" not in shown and "\x1b[5m" not in shown
