"""Where extraction loses time: decode + resize + encode over in-memory JPEG bytes, serial vs
overlapped (threads, side stream), batch sizes, CUDA-graph encoder, nvImageCodec's hardware decoder.

    python bench/pipeline_probe.py [--images 8192]
"""
import argparse
import sys
import tempfile
import threading
import queue
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from extract import synthetic_jpegs  # noqa: E402
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint  # noqa: E402
from fewshot.data.images import resize_crop_batch  # noqa: E402
from fewshot.features.preprocess import normalize_pixels  # noqa: E402
from torchvision.io import ImageReadMode, decode_jpeg  # noqa: E402


def timed(fn, n, reps=3):
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(n / (time.perf_counter() - t0))
    return round(sorted(out)[len(out) // 2])


def tv_decode(batch):
    return decode_jpeg(batch, mode=ImageReadMode.RGB, device="cuda")


def make_nv():
    from nvidia import nvimgcodec
    print("ColorSpec:", [c for c in dir(nvimgcodec.ColorSpec) if not c.startswith("_")])
    print("BackendKind:", [c for c in dir(nvimgcodec.BackendKind) if not c.startswith("_")])
    cs = getattr(nvimgcodec.ColorSpec, "RGB", None) or getattr(nvimgcodec.ColorSpec, "SRGB")
    decs = {}
    for label, kinds in {"nv_default": None, "nv_hw": ["HW_GPU_ONLY"], "nv_hw_gpu": ["HW_GPU_ONLY", "GPU_ONLY"]}.items():
        try:
            d = nvimgcodec.Decoder() if kinds is None else nvimgcodec.Decoder(
                backends=[nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, k)) for k in kinds])
            p = nvimgcodec.DecodeParams(color_spec=cs)
            decs[label] = (d, p)
        except Exception as e:  # noqa: BLE001
            print(label, "failed", e)
    return decs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8192)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    save_checkpoint(build_clip(), tmp / "rn50.pt")
    bb = load_backbone(str(tmp / "rn50.pt"), torch.device("cuda"))
    model, size, dtype = bb.model, bb.input_resolution, bb.model.visual.conv1.weight.dtype
    names = synthetic_jpegs(tmp, args.images)
    raw = [(tmp / n).read_bytes() for n in names]
    tens = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
    n = len(raw)
    rows = {}

    def encode(px):
        return model.encode_image(normalize_pixels(px).to(dtype)).to(torch.float16)

    for bs in (256, 512):
        sl = [slice(i, i + bs) for i in range(0, n, bs)]
        rows[f"decode_only_{bs}"] = timed(lambda: [tv_decode(tens[s]) for s in sl], n)
        imgs = tv_decode(tens[:bs])
        px = resize_crop_batch(imgs, size)
        rows[f"encode_only_{bs}"] = timed(lambda: [encode(px) for _ in sl], n)
        rows[f"serial_{bs}"] = timed(lambda: [encode(resize_crop_batch(tv_decode(tens[s]), size)) for s in sl], n)

        def threaded(decode=tv_decode, data=tens):
            q, side = queue.Queue(3), torch.cuda.Stream()
            def prod():
                with torch.cuda.stream(side):
                    for s in sl:
                        im = decode(data[s])
                        ev = torch.cuda.Event(); ev.record(side)
                        q.put((im, ev))
                q.put(None)
            t = threading.Thread(target=prod); t.start()
            out = []
            while (item := q.get()) is not None:
                im, ev = item
                torch.cuda.current_stream().wait_event(ev)
                out.append(encode(resize_crop_batch(im, size)))
            t.join()
            return out
        rows[f"threaded_{bs}"] = timed(threaded, n)
        # CUDA graph of the encoder at this batch size
        try:
            static = px.clone()
            s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    encode(static)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = encode(static)
            def graphed(px):
                static.copy_(px); g.replay(); return static_out.clone()
            rows[f"encode_graph_{bs}"] = timed(lambda: [graphed(px) for _ in sl], n)
            diff = (graphed(px).float() - encode(px).float()).abs().max().item()
            rows[f"graph_max_abs_diff_{bs}"] = diff
            enc_saved = encode
            def threaded_graph():
                nonlocal encode
                encode = lambda p: graphed(p) if p.shape[0] == bs else enc_saved(p)  # noqa: E731
                try:
                    return threaded()
                finally:
                    encode = enc_saved
            rows[f"threaded_graph_{bs}"] = timed(threaded_graph, n)
        except Exception as e:  # noqa: BLE001
            rows[f"graph_{bs}"] = f"failed: {e}"
        try:
            for label, (d, p) in make_nv().items():
                def nvdec(batch, d=d, p=p):
                    ims = d.decode(batch, params=p, cuda_stream=torch.cuda.current_stream().cuda_stream)
                    return [torch.as_tensor(im, device="cuda").permute(2, 0, 1) for im in ims]
                rows[f"{label}_decode_only_{bs}"] = timed(lambda: [nvdec(raw[s]) for s in sl], n)
                rows[f"{label}_threaded_{bs}"] = timed(lambda: threaded(nvdec, raw), n)
                a, b = nvdec(raw[:2])[0], tv_decode(tens[:2])[0]
                rows[f"{label}_vs_tv_mean_abs"] = float((a.float() - b.float()).abs().mean())
        except Exception as e:  # noqa: BLE001
            rows[f"nv_{bs}"] = f"failed: {type(e).__name__}: {e}"
        print(rows, flush=True)


if __name__ == "__main__":
    main()
