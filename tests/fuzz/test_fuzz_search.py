"""Any text as `q` is a query both engines accept: the generated tsquery and FTS5 expression are safe by
construction. Run against real PostgreSQL and SQLite."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from market.adapters.db.repositories import PiccoloItemRepository
from market.adapters.db.search import search_terms
from market.domain.catalog import MAX_QUERY_TERMS, ItemFilter, normalise_query
from tests.support.database import add_item, add_user

pytestmark = pytest.mark.fuzz

SYNTAX = "-!&|():*\"'<>^~+.,;@#%$\\/ \t\n{}[]\x00"
# Operators and quotes of both query languages, words, and everything else Unicode has.
QUERIES = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(SYNTAX), max_size=2_000),
    st.lists(
        st.sampled_from(["-", "!", "or", "and", "not", "near", "a", "mug", '"', "*", "(", ")", ":"])
    ).map(" ".join),
    st.lists(st.sampled_from(["-", "!", "mug", "a", "(", '"', "&", "|", "<->"]), max_size=500).map("".join),
    # Runs of one operator: parsers nest them (a stack per NOT, per parenthesis).
    st.builds(
        lambda token, times: token * times,
        st.sampled_from(["-", "!", "-a ", "(", '"', "or ", "a-", "NEAR(", "*"]),
        st.integers(0, 3_000),
    ),
)


@given(query=QUERIES)
@example(query="-" * 33)
@example(query="!" * 33)
@example(query="a" + " -a" * 40)
def test_the_terms_of_any_text_are_at_most_32_distinct_words(query):
    terms = search_terms(query)
    assert len(terms) <= MAX_QUERY_TERMS and len(set(terms)) == len(terms)
    assert all(term and (ch.isalnum() or ch == "_" for ch in term) for term in terms)


@given(query=QUERIES)
@example(query="-" * 33)
@example(query="-" * 5_000)
@example(query="a-" * 500)
async def test_any_text_is_a_search_both_engines_answer(db, query):
    if not hasattr(db, "_fuzz_seeded"):
        await add_item(db, await add_user(db), title="Blue mug")
        db._fuzz_seeded = True
    page = await PiccoloItemRepository(db).browse(ItemFilter(query=normalise_query(query)), 20, None)
    assert len(page.items) <= 1
