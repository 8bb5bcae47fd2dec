"""The VSI phantom ultrasound simulator (DESIGN.md section 3).

A procedural 3D phantom of a pregnant abdomen is swept with the VSI obstetric protocol; every frame is rendered
through each scanner profile's imaging chain. ``simulate`` writes a folder that ``sonoshift prepare`` accepts.
"""
