"""Evals of a completions endpoint: evalscope's OpenAI model API, its chat calls sent as one prompt to
/v1/completions and the reply read back as the chat completion evalscope parses."""

import json

import httpx

REPLY = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "base",
         "choices": [{"index": 0, "text": " The answer is 42.", "finish_reason": "stop", "logprobs": None}],
         "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}


def test_a_conversation_becomes_one_prompt_in_order():
    from serve_app.eval.completions import render_prompt

    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": [{"type": "text", "text": "What is 6 x 7?"}, {"type": "image_url"}]}]
    assert render_prompt(messages) == "Answer briefly.\n\nWhat is 6 x 7?"


def _model(sent):
    """The model API as evalscope finds it in its registry (the import registers it), over a stand-in endpoint.
    Imported here, not at collection: importing evalscope's model APIs while pytest collects made the benchmark
    imports of test_code_execution trip CPython 3.11's AST recursion check."""
    from evalscope.api.registry import get_model_api

    from serve_app.eval.completions import EVAL_TYPE

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, request.content))
        return httpx.Response(200, json=REPLY)

    api = get_model_api(EVAL_TYPE)
    return api(model_name="base", base_url="http://completions.test/v1", api_key="k",
               http_client=httpx.Client(transport=httpx.MockTransport(answer)), max_retries=0)


def test_evalscopes_model_api_sends_the_prompt_to_completions_and_reads_the_reply():
    from evalscope.api.messages import ChatMessageSystem, ChatMessageUser
    from evalscope.api.model import GenerateConfig

    sent = []
    model = _model(sent)
    config = GenerateConfig(max_tokens=16, temperature=0.0, stream=True, seed=3, reasoning_effort="low")
    output = model.generate([ChatMessageSystem(content="Answer briefly."), ChatMessageUser(content="What is 6 x 7?")],
                            tools=[], tool_choice="none", config=config)
    assert output.completion == " The answer is 42." and output.usage.output_tokens == 5
    ((path, body),) = sent
    assert path == "/v1/completions"
    request = json.loads(body)
    assert request["prompt"] == "Answer briefly.\n\nWhat is 6 x 7?" and "messages" not in request
    assert (request["max_tokens"], request["seed"], request.get("stream", False)) == (16, 3, False)
    assert request["reasoning_effort"] == "low"  # what only chat clients name travels as an extra field
