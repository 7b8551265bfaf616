"""A review-listing cursor is a member of the pending index exactly: anything more is refused."""
import pytest

from service.usecases.reviews_index import BadCursor, decode_cursor, encode_cursor, entry


@pytest.mark.parametrize("user, app", [("u-1", "a-1"), ("用户 1~x", "a.1_%2F")])
def test_a_cursor_the_service_gave_decodes_to_its_member(user, app):
    member = entry(user, app, 1_790_000_000)
    assert decode_cursor(encode_cursor(member)) == member


@pytest.mark.parametrize("member", ["1790000000|u-1|a-1\n", "\n1790000000|u-1|a-1",
                                    "1790000000|u-1|a-1|x", "179000000|u-1|a-1", "1790000000|u 1|a-1",
                                    "１７９０００００００|u-1|a-1"])
def test_a_cursor_that_is_not_a_member_exactly_is_refused(member):
    with pytest.raises(BadCursor):
        decode_cursor(encode_cursor(member))
