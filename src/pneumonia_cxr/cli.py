"""`pneumonia-cxr` console entry: `pneumonia-cxr summary|predict|review|run|report|demo ...`."""

import sys


def main() -> int:
    commands = {
        "summary": "pneumonia_cxr.data.summary",
        "predict": "pneumonia_cxr.predict",
        "review": "pneumonia_cxr.review.app",
        "run": "pneumonia_cxr.runner",
        "report": "pneumonia_cxr.report",
        "demo": "pneumonia_cxr.data.demo",
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: pneumonia-cxr {{{'|'.join(commands)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(commands[sys.argv[1]]).main(sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
