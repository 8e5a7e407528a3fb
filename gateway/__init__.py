"""sotai.gateway"""
