"""Calls shaped as agent frameworks report them (tests/frameworks), shared by the live-metric tests."""

# Calls as agent frameworks report them (tests/frameworks): a framework's name as the provider, LiteLLM's
# provider/model and no provider, audio tokens; the metrics label them as `analyze cost` groups them (the
# provider that served the call) and price them as it does (the price entry for openai's gpt-4o-mini applies
# to LiteLLM's openai/gpt-4o-mini, the audio tokens at gpt-audio's audio prices)
FRAMEWORK_CALLS: list[dict[str, object]] = [
    {"gen_ai.provider.name": "strands-agents", "gen_ai.request.model": "gpt-4.1",
     "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 60},
    {"gen_ai.request.model": "openai/gpt-4o-mini", "gen_ai.usage.input_tokens": 700, "gen_ai.usage.output_tokens": 40},
    {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-audio", "gen_ai.usage.input_tokens": 3000,
     "gen_ai.usage.audio.input_tokens": 2500, "gen_ai.usage.output_tokens": 1200,
     "gen_ai.usage.audio.output_tokens": 1000},
]  # fmt: skip
