"""``prefkit llm``: serve a local model through the OpenAI schema, or ask a backend once.

- ``llm serve --model DIR [--host 127.0.0.1] [--port 8000] [--name NAME]``
- ``llm ask --llm SPEC --message TEXT [--n N] [--temperature T] [--max-tokens M] [--json]``
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llm", help="LLM backend: serve a local model (OpenAI schema), ask a backend",
                       description="The LLM backend of judges, critics and principle proposers (docs/llm.md).")
    llm_sub = p.add_subparsers(dest="llm_command", metavar="SUBCOMMAND", required=True)

    s = llm_sub.add_parser(
        "serve", help="serve a local causal LM as an OpenAI-compatible chat-completions endpoint",
        description="Serve a local Hugging Face causal LM (e.g. a `prefkit train` policy directory) at "
                    "http://HOST:PORT/v1 (chat/completions, completions, models). Binds 127.0.0.1 by default. "
                    "For local use and tests; one request runs on the model at a time.")
    s.add_argument("--model", required=True, help="local Hugging Face causal LM directory")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--name", default=None, help="model name clients must send (default: the directory name)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=run)

    a = llm_sub.add_parser("ask", help="send one chat request to a backend and print the answers",
                           description="A quick check of a backend spec and its settings (docs/llm.md).")
    a.add_argument("--llm", required=True, metavar="SPEC", help="hf:DIR, DIR, openai:MODEL or openai")
    a.add_argument("--message", required=True, help="the user message")
    a.add_argument("--n", type=int, default=1)
    a.add_argument("--temperature", type=float, default=0.0)
    a.add_argument("--max-tokens", type=int, default=64)
    a.add_argument("--no-cache", action="store_true", help="do not read or write the request cache")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.llm_command == "serve":
        return _serve(args)
    return _ask(args)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prefkit.llm.hf import HFBackend
    from prefkit.llm.serve import make_server

    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    backend = HFBackend.load(args.model, device=args.device)
    name = args.name or Path(args.model).resolve().name
    server = make_server(backend, model_name=name, host=args.host, port=args.port, verbose=args.verbose)
    print(f"serving {args.model} as model {name!r} at {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _ask(args: argparse.Namespace) -> int:
    from prefkit.llm import ChatRequest, LLMConfig, make_backend

    config = LLMConfig.from_env(**({"cache": ""} if args.no_cache else {}))
    backend = make_backend(args.llm, config)
    result = backend.chat([ChatRequest(messages=({"role": "user", "content": args.message},), n=args.n,
                                       temperature=args.temperature, max_tokens=args.max_tokens)])[0]
    if args.json:
        print(json.dumps({"texts": result.texts, "finish_reasons": result.finish_reasons, "cached": result.cached,
                          **backend.summary()}))
    else:
        for i, text in enumerate(result.texts):
            print(f"[{i}] {text}")
        print(f"({backend.summary()})")
    return 0
