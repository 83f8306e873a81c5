"""Decode-only throughput of the GPU JPEG decoders on 500x375 JPEGs, batch 256: torchvision's
batched nvjpeg (what fewshot.images uses) against nvImageCodec's backends (hardware JPEG engines
of A100/H100/H200, CUDA, hybrid), plus the resize+crop and encoder stages alone.

    python bench/decode_backends.py [--images 4096]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from extract import synthetic_jpegs  # noqa: E402


def rate(fn, n, reps=3):
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(n / (time.perf_counter() - t0))
    return round(sorted(out)[len(out) // 2])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    names = synthetic_jpegs(tmp, args.images)
    raw = [(tmp / n).read_bytes() for n in names]
    tens = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
    batches = [slice(i, i + 256) for i in range(0, len(raw), 256)]
    from torchvision.io import ImageReadMode, decode_jpeg
    rows = {}
    rows["torchvision_nvjpeg_batched"] = rate(lambda: [decode_jpeg(tens[s], mode=ImageReadMode.RGB, device="cuda") for s in batches], len(raw))
    try:
        from nvidia import nvimgcodec
        K = nvimgcodec.BackendKind
        for label, kinds in {"nvimgcodec_default": None, "nvimgcodec_hw": [K.HW_GPU_ONLY],
                             "nvimgcodec_gpu": [K.GPU_ONLY], "nvimgcodec_hybrid": [K.HYBRID_CPU_GPU],
                             "nvimgcodec_hw+gpu": [K.HW_GPU_ONLY, K.GPU_ONLY]}.items():
            try:
                dec = nvimgcodec.Decoder() if kinds is None else nvimgcodec.Decoder(backends=[nvimgcodec.Backend(k) for k in kinds])
                params = nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.RGB)
                def run():
                    for s in batches:
                        imgs = dec.decode(raw[s], params=params)
                        ts = [torch.as_tensor(im, device="cuda") for im in imgs]
                    return ts
                rows[label] = rate(run, len(raw))
                t = run()[0]
                rows[label + "_shape"] = list(t.shape)
            except Exception as e:  # noqa: BLE001
                rows[label] = f"failed: {type(e).__name__}: {str(e)[:200]}"
        try:  # agreement with torchvision on the same files
            dec = nvimgcodec.Decoder()
            a = torch.as_tensor(dec.decode(raw[:8], params=nvimgcodec.DecodeParams(color_spec=nvimgcodec.ColorSpec.RGB))[0], device="cuda").permute(2, 0, 1)
            b = decode_jpeg(tens[0], mode=ImageReadMode.RGB, device="cuda")
            rows["nvimgcodec_vs_torchvision_mean_abs"] = float((a.float() - b.float()).abs().mean())
        except Exception as e:  # noqa: BLE001
            rows["agreement"] = f"failed: {e}"
    except ImportError as e:
        rows["nvimgcodec"] = f"not importable: {e}"
    from fewshot.images import resize_crop_batch
    imgs = decode_jpeg(tens[:256], mode=ImageReadMode.RGB, device="cuda")
    rows["resize_crop_224"] = rate(lambda: resize_crop_batch(imgs, 224), 256, reps=5)
    print(rows)


if __name__ == "__main__":
    main()
