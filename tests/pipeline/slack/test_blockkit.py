"""Block Kit texts: Slack's escaping, lengths as Slack counts them, cuts that keep every character whole."""

import pytest

from pipeline.slack import blockkit as bk


def test_escapes_only_the_three_control_characters():
    assert bk.escape("a & b <!channel> > c 'q' \"d\"") == "a &amp; b &lt;!channel&gt; &gt; c 'q' \"d\""


def test_counts_emoji_outside_the_bmp_as_two_code_units():
    assert bk.slack_len("abc") == 3
    assert bk.slack_len("支付服务") == 4  # CJK in the BMP: one each
    assert bk.slack_len("🔥") == 2
    assert bk.slack_len("👩🏽‍💻") == 7  # woman, skin tone, ZWJ, laptop


@pytest.mark.parametrize("text", [
    "支付服务" * 1000,  # CJK
    "🔥" * 1000,  # astral emoji: a cut in the middle would leave a lone surrogate
    "👩🏽‍💻" * 500,  # a ZWJ sequence with a modifier: one grapheme of four code points
    "🇯🇵🇩🇪" * 500,  # flags: regional indicator pairs
    "é" * 2000,  # e + combining acute
    "&<>" * 1000,  # escape entities must not be cut in half
])
def test_a_cut_keeps_every_grapheme_and_entity_whole(text):
    escaped = bk.escape(text)
    clipped = bk.clip(escaped, 100)
    assert bk.slack_len(clipped) <= 100
    assert clipped.endswith(bk.ELLIPSIS)
    body = clipped[: -len(bk.ELLIPSIS)]
    assert escaped.startswith(body)
    # whole graphemes only: the kept part is a prefix made of the text's own clusters
    assert bk._TOKENS.findall(body) == bk._TOKENS.findall(escaped)[: len(bk._TOKENS.findall(body))]
    assert not body.endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "&g", "&gt", "\u200d"))
    body.encode("utf-8")  # no lone surrogate


def test_a_short_text_is_left_alone():
    assert bk.clip("order-service", 150) == "order-service"


def test_lone_surrogates_and_control_characters_are_made_safe():
    assert bk.clean("a\ud800b\x00c\x1bd\ne") == "a\ufffdbcd\ne"
    assert bk.clean("\ud83d\ude00") == "😀"  # a surrogate pair that arrived split is joined


@pytest.mark.parametrize("count", [0, 1, 5, 100, 10_000])
def test_a_list_fits_and_counts_what_it_leaves_out(count):
    items = [f"service-{i}-服务" for i in range(count)]
    text = bk.bounded_list(items, 300, sep=", ")
    assert bk.slack_len(text) <= 300
    shown = [s for s in text.split(", ") if s.startswith("service-")]
    if len(shown) < count:
        assert text.endswith(f"and {count - len(shown)} more")
    else:
        assert "more" not in text


def test_one_huge_item_is_clipped_not_dropped():
    text = bk.bounded_list(["x" * 10_000, "y" * 10_000], 200)
    assert bk.slack_len(text) <= 200 and text.startswith("xxx") and text.endswith("and 1 more")


def test_links_are_http_only_and_escaped():
    assert bk.link("https://am.example/#/alerts?a=1&b=2", "Alertmanager") == \
        "<https://am.example/#/alerts?a=1&amp;b=2|Alertmanager>"
    assert bk.link("javascript:alert(1)", "x<y") == "x&lt;y"
    assert bk.link("https://a.example/|<!channel>", "x") == "x"


def test_more_than_fifty_blocks_end_in_a_note():
    blocks = bk.fit_blocks([bk.divider() for _ in range(80)])
    assert len(blocks) == 50
    assert blocks[-1]["elements"][0]["text"] == "and 31 more blocks not shown"


def test_problems_names_each_broken_limit():
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001},
                "fields": [{"type": "mrkdwn", "text": "y"}] * 11}
    found = bk.problems([too_long, {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}])
    assert found == ["block 0 (section): text of 3001 characters, over 3000", "block 0 (section): 11 fields, over 10",
                     "block 1 (header): text of 151 characters, over 150"]
    assert bk.problems([bk.header("h" * 500), bk.section("s" * 9000, ["f" * 9000] * 30)]) == []


def test_a_button_value_that_cannot_fit_is_refused():
    with pytest.raises(ValueError, match="button value"):
        bk.button("Go", "go", "v" * 2001)
