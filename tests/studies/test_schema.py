import pytest

from debuggable.studies import AnswerError, Block, Image, Option, Question, Study, Task

from tests.studies.toy import _questions


def _task(**kw):
    base = dict(id="s/1", study="s", condition="a", blocks=[Block(kind="text", text="hi")], questions=_questions(),
                key={"pick": "B"})
    base.update(kw)
    return Task(**base)


def test_a_full_answer_is_normalised():
    t = _task()
    out = t.validate_answer({"pick": "B", "seen": ["C", "A"], "ease": "4", "pattern": "yes", "describe": " <script>x</script>; DROP TABLE answers;--"})
    assert out == {"pick": "B", "seen": ["A", "C"], "ease": 4, "pattern": "yes",
                   "describe": " <script>x</script>; DROP TABLE answers;--"}
    assert t.correct(out) == {"pick": True}


def test_hidden_questions_must_be_left_out_and_multi_defaults_to_empty():
    t = _task()
    assert t.validate_answer({"pick": "A", "ease": 1, "pattern": "no"}) == {"pick": "A", "seen": [], "ease": 1, "pattern": "no"}
    with pytest.raises(AnswerError, match="not asked unless 'pattern' is 'yes'"):
        t.validate_answer({"pick": "A", "ease": 1, "pattern": "no", "describe": "x"})


@pytest.mark.parametrize("answer, problem", [
    ({"pick": "D", "ease": 1, "pattern": "no"}, "expected one of"),
    ({"pick": "A", "ease": 6, "pattern": "no"}, "integer from 1 to 5"),
    ({"pick": "A", "ease": 0, "pattern": "no"}, "integer from 1 to 5"),
    ({"pick": "A", "ease": True, "pattern": "no"}, "integer from 1 to 5"),
    ({"pick": "A", "ease": 2.5, "pattern": "no"}, "integer from 1 to 5"),
    ({"pick": "A", "ease": 2}, "'pattern': an answer is required"),
    ({"pick": "A", "ease": 2, "pattern": "yes", "describe": "x" * 201}, "at most 200 characters"),
    ({"pick": "A", "ease": 2, "pattern": "yes", "describe": "   "}, "'describe': an answer is required"),
    ({"pick": "A", "ease": 2, "pattern": "no", "seen": ["A", "A"]}, "at most once"),
    ({"pick": "A", "ease": 2, "pattern": "no", "extra": 1}, "no such question"),
    ([1, 2], "expected an object"),
])
def test_bad_answers_are_refused_with_the_question_named(answer, problem):
    with pytest.raises(AnswerError, match=problem):
        _task().validate_answer(answer)


def test_public_view_hides_key_and_meta():
    t = _task(meta={"target": 3})
    pub = t.public()
    assert "key" not in pub and "meta" not in pub and pub["questions"][0]["key"] == "pick"


@pytest.mark.parametrize("src", ["/etc/passwd", "img/../secret.key", "other/x.png", "img/../../x.png"])
def test_images_must_stay_under_img(src):
    with pytest.raises(ValueError, match="under the study's img/"):
        Image(src=src)


def test_inconsistent_records_are_refused():
    with pytest.raises(ValueError, match="at least two options"):
        Question(key="q", kind="choice", prompt="?", options=[Option(value="a", label="a")])
    with pytest.raises(ValueError, match="later or unknown"):
        _task(questions=[Question(key="d", kind="text", prompt="?", show_if={"key": "p", "equals": "yes"}),
                         Question(key="p", kind="choice", prompt="?", options=[Option(value="yes", label="y"), Option(value="no", label="n")])],
              key={})
    with pytest.raises(ValueError, match="attention check needs an answer key"):
        _task(attention_check=True, key={})
    with pytest.raises(ValueError, match="lowercase slug"):
        Study(name="Bad Name", kind="x", title="t", instructions=[], conditions=["a"], tasks=[])
    with pytest.raises(ValueError, match="condition 'z'"):
        Study(name="s", kind="x", title="t", instructions=[], conditions=["a"], tasks=[_task(condition="z")])
