"""The selection step's calibration: logistic weights per feature and threshold, per kind of data.

Data, written by `python -m sotai.rag.select` (refit there, do not edit by hand). A Python module
rather than a JSON file so that every install (wheel, image) carries it.
"""

CALIBRATION = {
 "features": [
  "bias",
  "score",
  "japanese_name",
  "alias",
  "gloss",
  "embedding",
  "agreeing_signals",
  "first_of_span",
  "third_or_later_of_span",
  "span_candidates",
  "covered",
  "count_tag",
  "span_length",
  "prior",
  "gloss_first",
  "embedding_first"
 ],
 "profiles": {
  "with_names": {
   "weights": [
    -2.952273,
    0.870792,
    0.854909,
    0.0,
    0.362869,
    0.130128,
    1.065319,
    0.850959,
    -0.604164,
    -0.49606,
    -0.518632,
    0.928758,
    0.211177,
    1.561843,
    0.349728,
    0.161102
   ],
   "threshold": 0.48,
   "fitted_on": "devset_ja.jsonl (49 texts), data",
   "precision": 0.9028,
   "recall": 0.907
  },
  "glosses_only": {
   "weights": [
    -2.217689,
    0.917561,
    0.833093,
    0.0,
    0.058946,
    0.450905,
    0.667778,
    0.990429,
    -0.876542,
    -0.717343,
    -0.270922,
    0.766746,
    -0.112148,
    1.161534,
    0.446736,
    0.642524
   ],
   "threshold": 0.57,
   "fitted_on": "devset_ja.jsonl (49 texts), embedded default",
   "precision": 0.9033,
   "recall": 0.8527
  }
 }
}
