"""Evals of a model behind an OpenAI-compatible *completions* endpoint (/v1/completions: a base model, no chat
template). evalscope's model APIs talk to chat endpoints only; this one is registered in its model API registry
as `openai_completions` and is evalscope's own OpenAI model API (requests, retries, timeouts, parsing) with one
change: its client's chat.completions.create sends the conversation as one prompt to completions.create, and
answers with the chat completion evalscope reads. Imported by the eval worker only (it imports evalscope).
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

from evalscope.api.registry import register_model_api
from evalscope.models.openai_compatible import OpenAICompatibleAPI
from openai import NOT_GIVEN
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice

EVAL_TYPE = "openai_completions"


def render_prompt(messages: list[dict[str, Any]]) -> str:
    """The chat messages as one prompt: each message's text in order (system prompt and few-shot turns included),
    separated by blank lines; the model continues after the last one."""
    texts = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts: only text reaches a completions endpoint
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        texts.append(content)
    return "\n\n".join(texts)


def as_chat_completion(completion: Completion) -> ChatCompletion:
    return ChatCompletion(
        id=completion.id,
        created=completion.created,
        model=completion.model,
        object="chat.completion",
        choices=[Choice(index=choice.index, finish_reason=choice.finish_reason or "stop",
                        message=ChatCompletionMessage(role="assistant", content=choice.text))
                 for choice in completion.choices],
        usage=completion.usage,
    )


def completion_parameters(completions: Any) -> set[str]:
    """What completions.create names (read once per client, not per request)."""
    return set(inspect.signature(completions.create).parameters)


class _Completions:
    def __init__(self, completions: Any) -> None:
        self._completions = completions
        # The reply is read whole: no stream. What only chat endpoints know (tools, ...) is left out.
        self._taken = completion_parameters(completions) - {"stream", "stream_options"}

    def request(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """A chat request's parameters as completions.create takes them: the prompt instead of the messages."""
        taken = {name: value for name, value in params.items() if name in self._taken and value is not NOT_GIVEN}
        return {**taken, "prompt": render_prompt(messages)}

    def create(self, *, messages: list[dict[str, Any]], **params: Any) -> ChatCompletion:
        return as_chat_completion(self._completions.create(**self.request(messages, params)))


class _AsyncCompletions(_Completions):
    async def create(self, *, messages: list[dict[str, Any]], **params: Any) -> ChatCompletion:
        return as_chat_completion(await self._completions.create(**self.request(messages, params)))


class OpenAICompletionsAPI(OpenAICompatibleAPI):
    """evalscope's OpenAI model API, sending to /v1/completions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client.chat = SimpleNamespace(completions=_Completions(self.client.completions))
        # evalscope moves what its client's create does not name into extra_body, reading those names once into
        # _valid_params: here they are completions.create's (the chat-only tools are left for the request to drop).
        self._valid_params = completion_parameters(self.client.completions) | {"messages", "tools", "tool_choice"}

    @property
    def async_client(self) -> Any:
        client = super().async_client
        return SimpleNamespace(chat=SimpleNamespace(completions=_AsyncCompletions(client.completions)))


@register_model_api(name=EVAL_TYPE)
def openai_completions() -> type[OpenAICompletionsAPI]:
    return OpenAICompletionsAPI
