"""`evalscope-serve`: start the service, or the OpenAI-compatible simulator used for demos and calibration."""

from __future__ import annotations

import argparse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalscope-serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    service = commands.add_parser("service", help="start the HTTP service on Ray Serve")
    service.add_argument("--host", default="0.0.0.0")
    service.add_argument("--port", type=int, default=9000)
    service.add_argument("--debug", action="store_true", help="tracebacks in every error response")
    service.add_argument("--outputs-root", default="outputs")
    service.add_argument("--datasets-root", default="datasets")

    simulate = commands.add_parser("simulate", help="start the OpenAI-compatible simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8801)
    simulate.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    simulate.add_argument("--itl-ms", type=float, default=0.0, help="delay between tokens")
    simulate.add_argument("--output-tokens", type=int, default=16, help="reply length for unknown prompts")
    simulate.add_argument("--model", default="simulator")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "service":
        from serve_app import run_service

        run_service(
            host=args.host,
            port=args.port,
            debug=args.debug,
            outputs_root=args.outputs_root,
            datasets_root=args.datasets_root,
        )
    else:
        from serve_app.simulator import SimulatorConfig, run_simulator

        config = SimulatorConfig(
            ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, output_tokens=args.output_tokens, model=args.model
        )
        run_simulator(host=args.host, port=args.port, config=config)


if __name__ == "__main__":
    main()
