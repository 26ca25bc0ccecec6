"""The published on-device rows beside which a phone or Jetson report stands (issue 23): Qualcomm AI Hub Models'
NPU figures for EfficientViT-B2/L2 classification and L2 segmentation (with source and date), and the official
README's Jetson AGX Orin SAM figures, read through evit_deploy.bench.reference like every published row."""

from __future__ import annotations

from evit_deploy.bench.reference import device_class_devices, hardware_rows, published


def test_ai_hub_rows_stand_beside_a_phone_report():
    assert {"galaxy-s23-npu", "galaxy-s24-npu", "snapdragon-8-elite-npu"} <= set(device_class_devices("phone"))
    for model, engines in (("efficientvit-b2-r224", 3), ("efficientvit-l2-r224", 3),
                           ("efficientvit-seg-l2-cityscapes", 2)):
        rows = [r for r in hardware_rows(model, device_class="phone") if r["device"] != "snapdragon-8gen1"]
        assert len(rows) == 3 * engines, model  # three phones, each engine Qualcomm published
        for r in rows:
            assert r["precision"] == "fp16" and r["batch"] == 1 and r["metric"] == "latency_ms"
            assert "ai-hub-models" in r["source"] and r["date"] == "2025-02-12" and r["value"] > 0
            assert r["device_name"] == published()["devices"][r["device"]]
    s24 = {r["engine"]: r["value"] for r in hardware_rows("efficientvit-b2-r224", device_class="phone")
           if r["device"] == "galaxy-s24-npu"}
    assert s24 == {"TFLite": 5.23, "QNN": 4.68, "ONNX Runtime QNN": 4.88}


def test_official_orin_sam_rows_are_there():
    orin = {m: r["value"] for m in ("efficientvit-sam-l0", "efficientvit-sam-l1", "efficientvit-sam-l2",
                                    "efficientvit-sam-xl0", "efficientvit-sam-xl1")
            for r in hardware_rows(m, device_class="jetson") if r["device"] == "jetson-agx-orin"}
    assert orin == {"efficientvit-sam-l0": 8.2, "efficientvit-sam-l1": 10.2, "efficientvit-sam-l2": 12.9,
                    "efficientvit-sam-xl0": 22.5, "efficientvit-sam-xl1": 37.2}
    assert all(r["engine"] == "TensorRT" and r["precision"] == "fp16" and r["batch"] == 1
               for r in hardware_rows("efficientvit-sam-l0", device_class="jetson"))
