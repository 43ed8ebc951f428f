from herd.prompts import format_seed, parse_generation, render_generation, render_response, student_prompt


def test_seed_with_input_is_instruction_colon_input():
    assert format_seed("Sort the numbers.", "3, 1, 2") == "Sort the numbers.:3, 1, 2"
    assert format_seed("  Name a colour. ", "  ") == "Name a colour."


def test_generation_prompt_wraps_each_example_and_names_topics():
    msgs = render_generation(["A?", "B.", "C:d"], 20, ["Jazz", "Volcanoes", "Tax"])
    user = msgs[-1]["content"]
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert all(f"<example>{e}</example>" in user for e in ["A?", "B.", "C:d"])
    assert user.count("<example>") == 4  # three examples and the format request
    assert "<example>C:d</example>" in user
    assert "Jazz, Volcanoes, Tax" in user
    assert "Write 20 new tasks" in user


def test_generation_prompt_without_topics_has_no_topic_line():
    user = render_generation(["A?"], 10)[-1]["content"]
    assert "topics" not in user.lower()
    assert "Write 10 new tasks" in user


def test_parse_tagged_answer_counts_truncated_and_repeats():
    text = (
        "Sure! Here are the tasks:\n"
        "<example>1. Explain how tides work.</example>\n"
        "<example>Name three prime numbers above 50.</example>\n"
        "<example>Name three prime numbers above 50.</example>\n"
        "<example></example>\n"
        "<example>Describe the water cyc"
    )
    result = parse_generation(text)
    assert result.instructions == ["Explain how tides work.", "Name three prime numbers above 50."]
    assert result.rejected == {"truncated": 1, "repeated_in_answer": 1, "empty": 1}


def test_parse_numbered_list_without_tags_skips_prose():
    text = "Here you go:\n1. What is a black hole?\n2) Task: Summarize the plot of Hamlet.\n- Translate 'cat' into Spanish.\nHope this helps!"
    result = parse_generation(text)
    assert result.instructions == ["What is a black hole?", "Summarize the plot of Hamlet.", "Translate 'cat' into Spanish."]
    assert result.rejected["prose_line"] == 2


def test_parse_rejects_leftover_markup():
    result = parse_generation("<example>Fix <b>this</b> sentence.</example>")
    assert result.instructions == [] and result.rejected["markup"] == 1


def test_response_and_student_prompts():
    msgs = render_response("What is 2+2?", "Be brief.")
    assert msgs == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    prompt = student_prompt("  What is 2+2? ")
    assert prompt.endswith("### Response:\n") and "What is 2+2?\n" in prompt


def test_parse_list_inside_one_tag_and_drops_answers():
    text = (
        "<example>\n1. Rank these universities by size: Princeton, Stanford.\n   Answer: Stanford, Princeton\n\n"
        "2. Explain the stereotype of a profession.: lawyer\n   Answer: Lawyers are greedy.\n</example>"
    )
    result = parse_generation(text)
    assert result.instructions == ["Rank these universities by size: Princeton, Stanford.",
                                   "Explain the stereotype of a profession.: lawyer"]
    assert result.rejected["answer_line"] == 2


def test_multiline_tagged_instruction_is_joined():
    result = parse_generation("<example>Summarize this text:\nThe cat sat on the mat.</example>")
    assert result.instructions == ["Summarize this text: The cat sat on the mat."]
