"""Runs llama.cpp's convert_hf_to_gguf.py (outtype f32) on Hugging Face model
folders, in a process of its own: the converter imports its own gguf-py,
which must not meet the gguf package the tests read with.

    python gguf_convert.py LLAMA_CPP_DIR JOBS.json

JOBS.json lists [model folder, output file, [more converter options]]. The
vocabulary step is the one part replaced: it needs a tokenizer the
converter recognises (a known pre-tokenizer hash, a SentencePiece model),
and tokenizer keys are not what these tests check. Everything else, the
hparams, set_gguf_parameters, modify_tensors, generate_extra_tensors and
the writer, is the converter's own. A failure prints CONVERT-FAILED with
the output file and the error, and the next job is run."""
import json
import os
import sys
import traceback


def main(argv):
    llama_cpp, jobs_file = argv
    with open(jobs_file) as f:
        jobs = json.load(f)
    sys.path.insert(0, llama_cpp)
    sys.argv = ["convert_hf_to_gguf.py"]
    import convert_hf_to_gguf as convert  # puts its gguf-py first on sys.path

    def no_vocab(self):
        pass

    real_get_model_class = convert.get_model_class

    def get_model_class(name, mmproj=False):
        cls = real_get_model_class(name, mmproj=mmproj)
        cls.set_vocab = no_vocab
        return cls

    convert.get_model_class = get_model_class
    failed = 0
    for model_dir, out, options in jobs:
        sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", "f32", "--outfile", out, *options]
        try:
            convert.main()
        except BaseException as exc:  # the converter also ends with sys.exit(1)
            failed += 1
            if os.path.exists(out):  # the header may be written before a tensor fails
                os.remove(out)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"CONVERT-FAILED {out}: {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
