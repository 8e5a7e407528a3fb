"""sotai.export"""
